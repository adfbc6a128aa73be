"""The chat WebSocket: ``ws/chats/<chat_id>/``. Same engine and events as REST, pushed as JSON frames.

Every tab on a chat joins the chat's Channels group (over Redis when REDIS_URL
is set), so all of them, in any worker, see each turn's events; a tab that
reconnects mid-turn gets the rest and can fetch what it missed from the
history API. One turn at a time per chat, across every worker and interface: a message sent
while one runs gets an ``error`` frame (code ``turn_in_progress``).

Client -> server: ``{"type": "message", "message", "provider"?, "model"?,
"system_prompt_id"?, "variables"?, "mcp_servers"?, "tools"?}``, ``{"type":
"approval", "approval_id", "decision": "approve" | "deny", "remember"?: "chat"}``,
``{"type": "elicitation", "elicitation_id", "action": "accept" | "decline" | "cancel", "content"?}``,
``{"type": "cancel"}``, ``{"type": "ping"}``. Server -> client: the engine's
events, plus ``{"type": "error", "code", "message"}`` for bad client frames (the
connection stays open), ``{"type": "pong"}`` and a first ``{"type": "ready",
"chat_id", "turn_in_progress", "pending_approvals", "pending_elicitations"}``: the running
turn's calls still waiting for a decision, as ``tool_approval_required`` events, and its servers'
questions still waiting for an answer, as ``elicitation_required`` events.
"""

import asyncio
import contextlib
import functools
import json
import logging
import time
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from platform_site.db import run_db
from platform_site.exceptions import REDIS_AWAY, ApplicationError
from platform_site.parsers import JsonTooDeep, json_loads

from .apis import TurnInputSerializer
from .models import Chat, ToolApproval
from .services.turns import (
    TurnHandle,
    approval_event,
    approval_list,
    approval_submit,
    parse_decision,
    turn_cancel,
    turn_prepare,
    turn_start,
)
from .services.turns.interactions import (
    elicitation_event,
    elicitation_list,
    elicitation_submit,
    parse_elicitation_answer,
)
from .services.turns.rules import chat_turn_in_progress
from .tabs import PROCESS_ID, TabsElsewhere, tabs_join, tabs_leave

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_BATCH = 256
LAYER_RETRY_SECONDS = 5.0  # after the layer failed, a turn stops trying other workers for this long
# Tabs connected to this process, by chat id. A turn's events reach them directly; the channel layer
# carries them only to tabs on other workers (which skip frames their own process sent).
LOCAL_TABS: dict[int, set["ChatConsumer"]] = {}


def group_name(chat_id: int) -> str:
    return f"chat.{chat_id}"


class ChatConsumer(AsyncWebsocketConsumer):
    chat_id: int
    user: Any = None
    api_key: Any = None
    on_layer = False  # subscribed on the channel layer: reachable by turns running on other workers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # AsyncConsumer.__call__, except that a channel layer it cannot subscribe on (Redis away) does not fail
        # the handshake: the tab then gets the turns of this worker only (LOCAL_TABS) until it reconnects.
        self.scope, self.base_send = scope, send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)  # type: ignore[assignment]
        sources = [receive]
        try:
            self.channel_name = await self.channel_layer.new_channel()
        except REDIS_AWAY:
            logger.warning("a tab connected while the channel layer (Redis) is away: it gets this worker's turns only")
        else:
            self.on_layer = True
            sources.append(functools.partial(self.channel_layer.receive, self.channel_name))
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch(sources, self.dispatch)

    async def connect(self) -> None:
        self.chat_id = int(self.scope["url_route"]["kwargs"]["chat_id"])
        # ApiKeyAuthMiddleware (accounts.channels_auth) set the user: by API key, else the session's.
        user: Any = self.scope.get("user")  # a User, or AnonymousUser (channels' lazy wrapper)
        subprotocol: str | None = self.scope.get("auth_subprotocol")  # type: ignore[assignment]
        if user is None or not user.is_authenticated:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return

        def load() -> tuple[Chat | None, list[ToolApproval], list[ToolApproval]]:
            chat = Chat.objects.filter(pk=self.chat_id, owner=user).only("turn_id", "turn_lease_until").first()
            if chat is None or not chat_turn_in_progress(chat=chat):
                return chat, [], []
            return (
                chat,
                approval_list(chat_id=self.chat_id, user=user),
                elicitation_list(chat_id=self.chat_id, user=user),
            )

        chat, pending, questions = await run_db(load)
        if chat is None:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user, self.api_key = user, self.scope.get("api_key")
        await self._join_other_workers()
        LOCAL_TABS.setdefault(self.chat_id, set()).add(self)
        await self.accept(subprotocol)
        await self._send(
            {
                "type": "ready",
                "chat_id": self.chat_id,
                "turn_in_progress": chat_turn_in_progress(chat=chat),
                # Tool calls of the running turn still waiting for a decision: a reloaded page asks again.
                "pending_approvals": [approval_event(approval).to_dict() for approval in pending],
                "pending_elicitations": [elicitation_event(row).to_dict() for row in questions],
            }
        )

    async def disconnect(self, code: int) -> None:
        # Leaving does not stop a running turn: it finishes and is stored.
        if self.user is not None:
            tabs = LOCAL_TABS.get(self.chat_id, set())
            tabs.discard(self)
            if not tabs:
                LOCAL_TABS.pop(self.chat_id, None)
                with contextlib.suppress(Exception):  # Redis away: the set expires by itself
                    await tabs_leave(self.chat_id)
            if self.on_layer:
                with contextlib.suppress(*REDIS_AWAY):  # Redis away: nothing is delivered there anyway
                    await self.channel_layer.group_discard(group_name(self.chat_id), self.channel_name)

    async def _join_other_workers(self) -> None:
        """Join the chat's group and list this worker on the chat, so turns run by other workers reach this tab."""
        if not self.on_layer:
            return
        try:
            await self.channel_layer.group_add(group_name(self.chat_id), self.channel_name)
            await tabs_join(self.chat_id)
        except REDIS_AWAY:
            logger.warning(
                "chat %s: a tab connected while Redis is away: it gets this worker's turns only", self.chat_id
            )

    # --- client frames ---------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("invalid_frame", "Send JSON text frames.")
            return
        data = text_data.encode()  # the limit is in bytes: 200k CJK characters are 600 KB
        if len(data) > settings.CHAT_WS_MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"Frames are limited to {settings.CHAT_WS_MAX_FRAME_BYTES} bytes.")
            return
        try:
            frame = json_loads(data)
        except JsonTooDeep as exc:
            await self._error("invalid_json", str(exc))
            return
        except ValueError:
            await self._error("invalid_json", "The frame is not valid JSON.")
            return
        if not isinstance(frame, dict):
            await self._error("invalid_frame", "A frame is a JSON object with a type.")
            return
        kind = frame.get("type")
        if kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "cancel":
            try:
                await turn_cancel(chat_id=self.chat_id, user=self.user)
            except ApplicationError as exc:  # the turn runs on a worker Redis cannot reach now
                await self._application_error(exc)
        elif kind == "message":
            await self._start_turn(frame)
        elif kind == "approval":
            try:
                approval_id, approve, remember = parse_decision(frame)
                await approval_submit(
                    user=self.user, approval_id=approval_id, approve=approve, remember=remember, chat_id=self.chat_id
                )
            except ApplicationError as exc:
                await self._application_error(exc)
        elif kind == "elicitation":
            try:
                elicitation_id, action, content = parse_elicitation_answer(frame)
                await elicitation_submit(
                    user=self.user, elicitation_id=elicitation_id, action=action, content=content, chat_id=self.chat_id
                )
            except ApplicationError as exc:
                await self._application_error(exc)
        else:
            await self._error(
                "unknown_type", f"Unknown frame type {kind!r}: use message, approval, elicitation, cancel or ping."
            )

    async def _start_turn(self, frame: dict[str, Any]) -> None:
        serializer = TurnInputSerializer(data={key: value for key, value in frame.items() if key != "type"})
        if not serializer.is_valid():
            first = next(iter(serializer.errors.items()))
            await self._error("invalid", f"{first[0]}: {first[1][0]}", details=serializer.errors)
            return
        try:
            prepared = await turn_prepare(
                user=self.user,
                chat_id=self.chat_id,
                request=serializer.to_turn(),
                api_key=self.api_key,
                count_request=True,
            )
            handle = await turn_start(prepared)
        except ApplicationError as exc:
            await self._application_error(exc)
            return
        asyncio.get_running_loop().create_task(_forward(self.channel_layer, self.chat_id, handle))

    # --- group messages ----------------------------------------------------------------------------

    async def chat_event(self, message: dict[str, Any]) -> None:
        if message.get("origin") != PROCESS_ID:  # this process's tabs got it directly
            await self._send(message["event"])

    async def _send(self, data: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(data, default=str))

    async def _error(self, code: str, message: str, details: Any = None, **extra: Any) -> None:
        await self._send({"type": "error", "code": code, "message": message, "details": details, **extra})

    async def _application_error(self, exc: ApplicationError) -> None:
        extra = {"retry_after": exc.retry_after} if hasattr(exc, "retry_after") else {}
        await self._error(exc.code, exc.message, details=exc.details, **extra)


async def _forward(layer: Any, chat_id: int, handle: TurnHandle) -> None:
    """Fan a turn's events out to every tab on the chat, in order; the turn runs regardless of listeners.

    Text deltas already waiting are merged into one frame (same round): under load a tab gets fewer,
    larger frames instead of falling behind, and no text is lost.
    """
    queue = handle.subscribe()
    elsewhere = TabsElsewhere(chat_id)
    layer_failed = False
    layer_skip_until = 0.0  # after a failure: a Redis that hangs would hold this worker's own tabs each frame
    try:
        while True:
            events = [await queue.get()]
            while not queue.empty() and len(events) < MAX_BATCH:
                events.append(queue.get_nowait())
            for frame in _merge_text(events):
                for tab in list(LOCAL_TABS.get(chat_id, ())):
                    with contextlib.suppress(Exception):  # a tab closing mid-send
                        await tab._send(frame)
                if time.monotonic() < layer_skip_until:
                    continue
                try:
                    if await elsewhere():
                        await layer.group_send(
                            group_name(chat_id), {"type": "chat.event", "event": frame, "origin": PROCESS_ID}
                        )
                except Exception:  # the layer (Redis) is away: tabs here got the frame all the same
                    if not layer_failed:  # once a turn, not once a frame
                        logger.warning("chat %s: could not reach tabs on other workers", chat_id, exc_info=True)
                    layer_failed = True
                    layer_skip_until = time.monotonic() + LAYER_RETRY_SECONDS
            if events[-1].type == "turn_done":
                return
    except Exception:
        logger.exception("forwarding chat %s events failed", chat_id)


def _merge_text(events: list[Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    for event in events:
        data = event.to_dict()
        last = frames[-1] if frames else None
        if (
            last is not None
            and data["type"] == last["type"] in ("text_delta", "thinking_delta")
            and data["round"] == last["round"]
        ):
            last["text"] += data["text"]
        else:
            frames.append(data)
    return frames
