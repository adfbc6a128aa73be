"""Counters in the shared cache (rate limits, tokens per minute, failed sign-ins): one round trip to Redis per count.

With REDIS_URL the cache is Redis and every worker process counts on the same
key; without it, the local-memory cache of the one process. Values are plain
integers, so ``cache.get(key)`` reads them either way.

While Redis is unreachable the counters live in this process's memory instead:
the same limits, counted per process rather than across workers. That is
logged once when it starts and once when Redis answers again; meanwhile Redis
is retried at most every RETRY_SECONDS, so requests do not each wait on a
connection attempt.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

from .exceptions import REDIS_AWAY

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0

_in_process = LocMemCache("counters-while-redis-is-away", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


class _Outage:
    """Whether Redis is away for the counters, with one log line when that changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._retry_at = 0.0

    def worth_trying(self) -> bool:
        return self._since is None or time.monotonic() >= self._retry_at

    def failed(self, exc: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            self._retry_at = now + RETRY_SECONDS
            if self._since is None:
                self._since = now
                logger.warning(
                    "Redis is unreachable (%s): rate limits are counted in each worker process's memory until it is "
                    "back",
                    exc,
                )

    def ended(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is not None:
                logger.warning(
                    "Redis is reachable again after %.0f s: rate limits are counted in Redis again",
                    time.monotonic() - self._since,
                )
                self._since = None


_outage = _Outage()


def _counted[T](on_redis: Callable[[], T], in_process: Callable[[BaseCache], T]) -> T:
    if not settings.REDIS_URL:
        return in_process(cache)  # the cache is this one process's memory anyway
    if _outage.worth_trying():
        try:
            value = on_redis()
        except REDIS_AWAY as exc:
            _outage.failed(exc)
        else:
            _outage.ended()
            return value
    return in_process(_in_process)


def _add(store: BaseCache, key: str, amount: int, ttl: int) -> int:
    if store.add(key, amount, ttl):
        return amount
    try:
        return store.incr(key, amount)
    except ValueError:  # expired between add and incr
        store.add(key, amount, ttl)
        return amount


def _redis_add(key: str, amount: int, ttl: int) -> int:
    client: Any = getattr(cache, "_cache", None)  # RedisCache's RedisCacheClient; private, so untyped
    if not hasattr(client, "get_client"):
        return _add(cache, key, amount, ttl)
    full_key = cache.make_and_validate_key(key)
    pipe = client.get_client(full_key, write=True).pipeline(transaction=False)
    pipe.incrby(full_key, amount)
    pipe.expire(full_key, ttl, nx=True)
    value, _ = pipe.execute()
    return int(value)


def counter_add(key: str, amount: int, *, ttl: int) -> int:
    """Add ``amount`` to the counter ``key`` (created with a lifetime of ``ttl`` seconds); the new value."""
    return _counted(lambda: _redis_add(key, amount, ttl), lambda store: _add(store, key, amount, ttl))


def counter_get_many(keys: Iterable[str]) -> dict[str, int]:
    """The counters among ``keys`` that exist, by key."""
    keys = list(keys)
    return _counted(lambda: cache.get_many(keys), lambda store: store.get_many(keys))


def counter_get(key: str) -> int:
    return counter_get_many([key]).get(key, 0)


def counter_delete(key: str) -> None:
    _counted(lambda: cache.delete(key), lambda store: store.delete(key))
