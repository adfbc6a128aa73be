"""The per-user API rate limit: 429 with Retry-After past the limit, counted per user in the shared cache."""

import time

import pytest
from django.conf import settings
from django.core.cache import cache

from accounts.throttling import WINDOW, rate_limit_key, rate_limit_window_left

from .conftest import client_for

pytestmark = pytest.mark.django_db


def _wait_for_fresh_window(user, seconds_needed: int = 5) -> None:
    # Fixed windows: don't start a burst right before one ends.
    while rate_limit_window_left() < seconds_needed:
        time.sleep(0.5)


def test_limit_gives_429_with_retry_after(user, settings):
    settings.RATE_LIMIT_PER_MINUTE = 3
    client = client_for(user)
    _wait_for_fresh_window(user)

    statuses = [client.get("/api/me").status_code for _ in range(4)]
    limited = client.get("/api/me")

    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == "throttled"


def test_limit_is_per_user(user, other_user, settings):
    settings.RATE_LIMIT_PER_MINUTE = 2
    alice, bob = client_for(user), client_for(other_user)
    _wait_for_fresh_window(user)
    _wait_for_fresh_window(other_user)

    alice_statuses = [alice.get("/api/me").status_code for _ in range(3)]
    bob_status = bob.get("/api/me").status_code

    assert alice_statuses == [200, 200, 429]
    assert bob_status == 200


def test_per_user_override_wins_over_default(user, other_user, settings):
    settings.RATE_LIMIT_PER_MINUTE = 1
    user.rate_limit_per_minute = 5
    user.save(update_fields=["rate_limit_per_minute"])
    alice, bob = client_for(user), client_for(other_user)
    _wait_for_fresh_window(user)
    _wait_for_fresh_window(other_user)

    alice_statuses = [alice.get("/api/me").status_code for _ in range(6)]
    bob_statuses = [bob.get("/api/me").status_code for _ in range(2)]

    assert alice_statuses == [200] * 5 + [429]
    assert bob_statuses == [200, 429]
    assert alice.get("/api/me").status_code == 429


def test_counter_lives_in_the_shared_cache(user, settings):
    # Another worker process sees the same count because it is kept in the cache, not in memory.
    settings.RATE_LIMIT_PER_MINUTE = 100
    client = client_for(user)
    _wait_for_fresh_window(user)
    client.get("/api/me")
    client.get("/api/me")

    assert cache.get(rate_limit_key(f"user:{user.pk}", int(time.time() // WINDOW))) == 2


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis cache backend")
def test_the_redis_cache_keeps_one_client_per_pool():
    client = cache._cache  # RedisCache._cache: the client it builds lazily

    assert client.get_client(write=True) is client.get_client(write=True)
    cache.set("one-client", 1)
    assert cache.get("one-client") == 1
