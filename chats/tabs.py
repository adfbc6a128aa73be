"""Which workers have tabs open on a chat, so a turn's events cross Redis only when another worker needs them.

Each worker adds itself to a Redis set per chat while it has a tab on it
(``tabs_join`` / ``tabs_leave``). The worker running a turn delivers events to
its own tabs directly and publishes them on the channel layer only while the
set names another worker (checked at the start and every few seconds). A
worker that died stays listed until the set expires: the cost is a publish
nobody reads, never a lost event. Without Redis there is one process and no
other worker to tell.

The sets live only in Redis, so each worker lists itself again every
RELIST_SECONDS while it has tabs: after Redis comes back empty (restarted,
flushed) or was away when a tab joined, turns on other workers reach this
worker's tabs again within that time.
"""

import asyncio
import contextlib
import time
import uuid
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

PROCESS_ID = uuid.uuid4().hex
RECHECK_SECONDS = 2.0
RELIST_SECONDS = 5.0
SET_TTL = 24 * 3600

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()


def _client() -> Any:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = aioredis.from_url(settings.REDIS_URL, socket_timeout=5)
    return client


def _key(chat_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'llmp')}:tabs:{chat_id}"


# Chats this worker has tabs on, and the task that lists it on them again and again (on the loop that serves them).
_listed: set[int] = set()
_relister: asyncio.Task[None] | None = None


async def _list(chat_ids: list[int]) -> None:
    pipe = _client().pipeline(transaction=False)
    for chat_id in chat_ids:
        pipe.sadd(_key(chat_id), PROCESS_ID)
        pipe.expire(_key(chat_id), SET_TTL)
    await pipe.execute()


async def _relist_while_tabs() -> None:
    while _listed:
        await asyncio.sleep(RELIST_SECONDS)
        with contextlib.suppress(Exception):  # Redis away: next time
            await _list(list(_listed))


async def tabs_join(chat_id: int) -> None:
    """List this worker on the chat; if Redis is away this raises, and the worker is listed once it is back."""
    global _relister
    if settings.REDIS_URL:
        _listed.add(chat_id)
        if _relister is None or _relister.done() or _relister.get_loop() is not asyncio.get_running_loop():
            _relister = asyncio.get_running_loop().create_task(_relist_while_tabs())
        await _list([chat_id])


async def tabs_leave(chat_id: int) -> None:
    _listed.discard(chat_id)
    if settings.REDIS_URL:
        await _client().srem(_key(chat_id), PROCESS_ID)


class TabsElsewhere:
    """Whether another worker has tabs on the chat, re-read at most every RECHECK_SECONDS."""

    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id
        self._value = False
        self._checked = float("-inf")

    async def __call__(self) -> bool:
        if not settings.REDIS_URL:
            return False
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            try:
                members = await _client().smembers(_key(self.chat_id))
            except Exception:
                return True  # can't tell: publish (the layer reports its own errors)
            self._value = any(member.decode() != PROCESS_ID for member in members)
        return self._value
