"""Django's Redis cache, with one Redis client per connection pool instead of one per call.

``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every cache
call (header tables, response callbacks: about half a millisecond), on every
API request's rate-limit count. A client is thread-safe and the pool is shared
anyway, so each process keeps one per pool.
"""

from typing import Any

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        base: Any = self  # the pool helpers are Django's private API, not in its stubs
        index = base._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = base._client(connection_pool=base._get_connection_pool(write))
        return client


class RedisCache(redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
