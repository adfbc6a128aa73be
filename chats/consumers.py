"""The chat WebSocket: ``ws/chats/<chat_id>/``. Same engine and events as REST, pushed as JSON frames.

Every tab on a chat joins the chat's Channels group (over Redis when REDIS_URL
is set), so all of them, in any worker, see each turn's events; a tab that
reconnects mid-turn gets the rest and can fetch what it missed from the
history API. One turn at a time per chat, across every worker and interface: a message sent
while one runs gets an ``error`` frame (code ``turn_in_progress``).

Client -> server: ``{"type": "message", "message", "provider"?, "model"?,
"system_prompt_id"?, "variables"?, "mcp_servers"?, "tools"?}``, ``{"type":
"cancel"}``, ``{"type": "ping"}``. Server -> client: the engine's events, plus
``{"type": "error", "code", "message"}`` for bad client frames (the connection
stays open), ``{"type": "pong"}`` and a first ``{"type": "ready", ...}``.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from platform_site.db import run_db
from platform_site.exceptions import ApplicationError

from .apis import TurnInputSerializer
from .models import Chat
from .services.turns import TurnHandle, turn_cancel, turn_prepare, turn_start
from .services.turns.rules import chat_turn_in_progress
from .tabs import PROCESS_ID, TabsElsewhere, tabs_join, tabs_leave

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_BATCH = 256
# Tabs connected to this process, by chat id. A turn's events reach them directly; the channel layer
# carries them only to tabs on other workers (which skip frames their own process sent).
LOCAL_TABS: dict[int, set["ChatConsumer"]] = {}


def group_name(chat_id: int) -> str:
    return f"chat.{chat_id}"


class ChatConsumer(AsyncWebsocketConsumer):
    chat_id: int
    user: Any = None
    api_key: Any = None

    async def connect(self) -> None:
        self.chat_id = int(self.scope["url_route"]["kwargs"]["chat_id"])
        # ApiKeyAuthMiddleware (accounts.channels_auth) set the user: by API key, else the session's.
        user: Any = self.scope.get("user")  # a User, or AnonymousUser (channels' lazy wrapper)
        subprotocol: str | None = self.scope.get("auth_subprotocol")  # type: ignore[assignment]
        if user is None or not user.is_authenticated:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        chat = await run_db(
            lambda: Chat.objects.filter(pk=self.chat_id, owner=user).only("turn_id", "turn_lease_until").first()
        )
        if chat is None:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user, self.api_key = user, self.scope.get("api_key")
        await self.channel_layer.group_add(group_name(self.chat_id), self.channel_name)
        tabs = LOCAL_TABS.setdefault(self.chat_id, set())
        if not tabs:
            await tabs_join(self.chat_id)
        tabs.add(self)
        await self.accept(subprotocol)
        await self._send(
            {"type": "ready", "chat_id": self.chat_id, "turn_in_progress": chat_turn_in_progress(chat=chat)}
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
            await self.channel_layer.group_discard(group_name(self.chat_id), self.channel_name)

    # --- client frames ---------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("invalid_frame", "Send JSON text frames.")
            return
        if len(text_data) > settings.CHAT_WS_MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"Frames are limited to {settings.CHAT_WS_MAX_FRAME_BYTES} bytes.")
            return
        try:
            frame = json.loads(text_data)
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
            await turn_cancel(chat_id=self.chat_id, user=self.user)
        elif kind == "message":
            await self._start_turn(frame)
        else:
            await self._error("unknown_type", f"Unknown frame type {kind!r}: use message, cancel or ping.")

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
            extra = {"retry_after": exc.retry_after} if hasattr(exc, "retry_after") else {}
            await self._error(exc.code, exc.message, details=exc.details, **extra)
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


async def _forward(layer: Any, chat_id: int, handle: TurnHandle) -> None:
    """Fan a turn's events out to every tab on the chat, in order; the turn runs regardless of listeners.

    Text deltas already waiting are merged into one frame (same round): under load a tab gets fewer,
    larger frames instead of falling behind, and no text is lost.
    """
    queue = handle.subscribe()
    elsewhere = TabsElsewhere(chat_id)
    try:
        while True:
            events = [await queue.get()]
            while not queue.empty() and len(events) < MAX_BATCH:
                events.append(queue.get_nowait())
            for frame in _merge_text(events):
                for tab in list(LOCAL_TABS.get(chat_id, ())):
                    with contextlib.suppress(Exception):  # a tab closing mid-send
                        await tab._send(frame)
                try:
                    if await elsewhere():
                        await layer.group_send(
                            group_name(chat_id), {"type": "chat.event", "event": frame, "origin": PROCESS_ID}
                        )
                except Exception:  # the layer (Redis) is away: tabs here still get every event
                    logger.warning("chat %s: could not reach tabs on other workers", chat_id, exc_info=True)
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
