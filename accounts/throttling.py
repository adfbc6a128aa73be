"""Per-user API rate limit on django-ratelimit's counters in the shared cache.

With REDIS_URL set the counters live in Redis, so the limit holds across all
worker processes. Anonymous requests are counted per client IP.
"""

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

from platform_site.exceptions import RateLimited

GROUP = "api"


def rate_limit_for(user: object) -> int:
    override = getattr(user, "rate_limit_per_minute", None)
    return override if override is not None else settings.RATE_LIMIT_PER_MINUTE


def _key(group: str, request: HttpRequest) -> str:
    user = request.user
    if user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


def _rate(group: str, request: HttpRequest) -> str:
    return f"{rate_limit_for(request.user)}/m"


def rate_limit_hit(request: HttpRequest) -> int | None:
    """Count one request; the seconds until the window resets if over the limit, else None."""
    usage = get_usage(request, group=GROUP, key=_key, rate=_rate, increment=True)
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, usage["time_left"])


class UserRateThrottle(BaseThrottle):
    retry_after: int | None = None

    def allow_request(self, request, view) -> bool:  # type: ignore[no-untyped-def]
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
