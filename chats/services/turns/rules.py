"""The rules every turn follows, on every interface and worker: one turn per chat, cancel from anywhere.

The chat row holds its running turn (``turn_id``, a lease, and the channel of
the worker that runs it), so every worker sees it: ``history.TurnStore.start``
takes the chat with one conditional UPDATE, and a second turn gets
``TurnInProgress`` (409 ``turn_in_progress``). A cancel, from REST or a
WebSocket on any worker, reads that row: a turn of this process is cancelled
directly, another worker's is told over the channel layer on its process
channel, which a small listener thread of each process reads.
"""

import asyncio
import logging
import threading
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import REDIS_AWAY, Conflict, NotFound, RedisUnavailable

from ...models import Chat

if TYPE_CHECKING:
    from .loop import TurnHandle

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex
CANCEL = "turn.cancel"
APPROVAL = "turn.approval"  # a decision was stored: wake the call waiting for it

# Turns running in this process, by chat id.
_running: dict[int, "TurnHandle"] = {}


class TurnInProgress(Conflict):
    code = "turn_in_progress"

    def __init__(self, message: str = "A reply is still being written in this chat; wait for it or cancel it.") -> None:
        super().__init__(message)


def turn_running_here(*, chat_id: int) -> "TurnHandle | None":
    return _running.get(chat_id)


def turn_register(handle: "TurnHandle") -> None:
    assert handle.chat_id is not None, "a turn registers once its chat is stored"
    _running[handle.chat_id] = handle


def turn_unregister(handle: "TurnHandle") -> None:
    if handle.chat_id is not None and _running.get(handle.chat_id) is handle:
        del _running[handle.chat_id]


def chat_turn_in_progress(*, chat: Chat) -> bool:
    return bool(chat.turn_id) and chat.turn_lease_until is not None and chat.turn_lease_until > timezone.now()


async def turn_cancel(*, chat_id: int, user: User) -> bool:
    """Ask the turn running on ``chat_id`` (on any worker) to stop; False when none is running."""
    chat = await run_db(
        lambda: Chat.objects.filter(pk=chat_id, owner=user).only("turn_id", "turn_owner", "turn_lease_until").first()
    )
    if chat is None:
        raise NotFound("Chat not found.")
    if not chat_turn_in_progress(chat=chat):
        return False
    handle = _running.get(chat_id)
    if handle is not None and handle.turn_id == chat.turn_id:
        handle.cancel()
        return True
    return await turn_control_send(
        chat.turn_owner, {"type": CANCEL, "chat_id": chat_id, "turn_id": chat.turn_id}, required=True
    )


async def turn_control_send(owner: str, message: dict[str, Any], *, required: bool) -> bool:
    """Send ``message`` to the process channel of the worker ``owner`` names; False if it has none.

    While Redis is away: RedisUnavailable (503) when ``required``, else a warning and False.
    """
    if not (settings.REDIS_URL and owner.startswith(_REMOTE_PREFIX)):
        return False
    layer = get_channel_layer()
    assert layer is not None, "settings always configure CHANNEL_LAYERS"
    try:
        await layer.send(owner.removeprefix(_REMOTE_PREFIX), message)
    except REDIS_AWAY as exc:
        if required:
            raise RedisUnavailable("The worker running this turn cannot be reached (Redis is away).") from exc
        logger.warning("turn control: %s not sent, Redis is away", message.get("type"))
        return False
    return True


# --- this process's channel, read by a listener thread ---------------------------------------------

_REMOTE_PREFIX = "layer:"
_listener_lock = threading.Lock()
_listener: Future[str] | None = None


async def turn_owner_name() -> str:
    """What a turn of this process writes as its owner: the process channel others can reach."""
    if not settings.REDIS_URL:
        return f"local:{PROCESS_ID}"  # one process: cancels never need to travel
    global _listener
    with _listener_lock:
        if _listener is None or (_listener.done() and _listener.exception() is not None):
            _listener = Future()
            threading.Thread(target=_listen, args=(_listener,), name="turn-control", daemon=True).start()
        ready = _listener
    try:
        return _REMOTE_PREFIX + await asyncio.wrap_future(ready)
    except REDIS_AWAY:
        # The turn runs all the same; only a cancel sent from another worker cannot reach it.
        logger.warning("turn control channel: Redis is away; this turn can be cancelled from this worker only")
        return f"local:{PROCESS_ID}"


def _listen(ready: Future[str]) -> None:
    asyncio.run(_receive_forever(ready))


async def _receive_forever(ready: Future[str]) -> None:
    # A layer of its own: a channel layer receives on one event loop per instance.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    try:
        # The in-memory and Redis layers take a prefix; their base class in types-channels does not.
        channel = await layer.new_channel(prefix="turns")  # type: ignore[call-arg]
    except Exception as exc:
        ready.set_exception(exc)
        return
    ready.set_result(channel)
    while True:
        try:
            message: dict[str, Any] = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("turn control channel: receive failed; retrying", exc_info=True)
            await asyncio.sleep(1)
            continue
        if message.get("type") == CANCEL:
            handle = _running.get(message.get("chat_id"))  # type: ignore[arg-type]
            if handle is not None and handle.turn_id == message.get("turn_id"):
                handle.cancel_threadsafe()
        elif message.get("type") == APPROVAL:
            from .approvals import approval_wake  # approvals sends through this module

            approval_wake(str(message.get("approval_id")))
