"""Counters in the shared cache (rate limits, tokens per minute): one round trip to Redis per count.

With REDIS_URL the cache is Redis and every worker process counts on the same
key; without it, the local-memory cache of the one process. Values are plain
integers, so ``cache.get(key)`` reads them either way.
"""

from typing import Any

from django.conf import settings
from django.core.cache import cache


def counter_add(key: str, amount: int, *, ttl: int) -> int:
    """Add ``amount`` to the counter ``key`` (created with a lifetime of ``ttl`` seconds); the new value."""
    client: Any = getattr(cache, "_cache", None)  # RedisCache's RedisCacheClient; private, so untyped
    if settings.REDIS_URL and hasattr(client, "get_client"):
        full_key = cache.make_and_validate_key(key)
        pipe = client.get_client(full_key, write=True).pipeline(transaction=False)
        pipe.incrby(full_key, amount)
        pipe.expire(full_key, ttl, nx=True)
        value, _ = pipe.execute()
        return int(value)
    if cache.add(key, amount, ttl):
        return amount
    try:
        return cache.incr(key, amount)
    except ValueError:  # expired between add and incr
        cache.add(key, amount, ttl)
        return amount
