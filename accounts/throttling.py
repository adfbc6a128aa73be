"""Per-user API rate limit: a fixed one-minute window counted in the shared cache.

With REDIS_URL set the counters live in Redis (one round trip per request), so
the limit holds across all worker processes. Anonymous requests are counted
per client IP.
"""

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from platform_site.counters import counter_add
from platform_site.exceptions import RateLimited

WINDOW = 60


def rate_limit_for(user: object) -> int:
    override = getattr(user, "rate_limit_per_minute", None)
    return override if override is not None else settings.RATE_LIMIT_PER_MINUTE


def rate_limit_key(ident: str, window: int) -> str:
    return f"rl:api:{ident}:{window}"


def rate_limit_window_left() -> float:
    """Seconds until the current window ends (the same for every counter)."""
    return WINDOW - time.time() % WINDOW


def _ident(request: HttpRequest) -> str:
    user = request.user
    if user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


def rate_limit_hit(request: HttpRequest) -> int | None:
    """Count one request; the seconds until the window resets if over the limit, else None."""
    now = time.time()
    window = int(now // WINDOW)
    count = counter_add(rate_limit_key(_ident(request), window), 1, ttl=WINDOW * 2)
    if count <= rate_limit_for(request.user):
        return None
    return max(1, int((window + 1) * WINDOW - now))


class UserRateThrottle(BaseThrottle):
    retry_after: int | None = None

    def allow_request(self, request: Any, view: Any) -> bool:
        self.retry_after = rate_limit_hit(request)
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after


class _UserRequest:
    """The little of a request django-ratelimit reads, for counting a request that is not HTTP (WebSocket)."""

    method = "POST"
    META: dict[str, str] = {}

    def __init__(self, user: object) -> None:
        self.user = user


def rate_limit_hit_for_user(user: object) -> int | None:
    """Count one request for ``user`` on the shared API counter (as for a REST call)."""
    return rate_limit_hit(_UserRequest(user))  # type: ignore[arg-type]


def rate_limit_check_user(*, user: object) -> None:
    """Count one request for ``user`` (a turn that did not come through DRF); RateLimited when over."""
    retry_after = rate_limit_hit_for_user(user)
    if retry_after is not None:
        raise RateLimited(f"Too many requests: retry in {retry_after} s.", retry_after=retry_after, code="throttled")
