"""Per-user API rate limit, and throttles on guessing (failed sign-ins, unknown API keys).

All are fixed windows counted in the shared cache. With REDIS_URL set the
counters live in Redis (one round trip per request for the rate limit), so the
limits hold across all worker processes. Anonymous requests are counted per
client IP.
"""

import hashlib
import math
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

from platform_site.counters import counter_add, counter_delete, counter_get_many
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


# --- Guessing: failed sign-ins and unknown API keys ------------------------------------------------
# Only failures are counted; a client is refused (without checking what it sent) while any of its
# counters has reached the limit in the current window. Windows are fixed, so a refusal lasts at most
# one window and a guesser gets at most twice the limit across a window boundary.


def _failure_key(scope: str, ident: str, index: int) -> str:
    return f"rl:fail:{scope}:{ident}:{index}"


def failures_retry_after(*, scope: str, idents: Sequence[str], limit: int, window: int) -> int | None:
    """Seconds until the window ends if any of ``idents`` has ``limit`` failures in it, else None."""
    if limit <= 0:
        return None
    now = time.time()
    index = int(now // window)
    counts = counter_get_many(_failure_key(scope, ident, index) for ident in idents)
    if any(count >= limit for count in counts.values()):
        return max(1, math.ceil((index + 1) * window - now))
    return None


def failures_add(*, scope: str, idents: Sequence[str], limit: int, window: int) -> None:
    if limit <= 0:
        return
    index = int(time.time() // window)
    for ident in idents:
        counter_add(_failure_key(scope, ident, index), 1, ttl=window)


def failures_clear(*, scope: str, ident: str, window: int) -> None:
    counter_delete(_failure_key(scope, ident, int(time.time() // window)))


def _account_ident(username: str) -> str:
    # Hashed: a username may hold characters a cache key should not (and need not be readable in Redis).
    return f"user:{hashlib.sha256(username.encode()).hexdigest()[:32]}"


def _login_idents(*, ip: str, username: str) -> list[str]:
    return [f"ip:{ip}", _account_ident(username)]


def login_attempt_reserve(*, ip: str, username: str) -> int | None:
    """Count a sign-in attempt as a failure before the password is checked; the seconds to wait if over the limit.

    Counting first (then giving the count back if the attempt was not a wrong password) means guesses sent in
    parallel cannot all read the count before any of them adds to it.
    """
    limit, window = settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_WINDOW_SECONDS
    if limit <= 0:
        return None
    now = time.time()
    index = int(now // window)
    counts = [
        counter_add(_failure_key("login", ident, index), 1, ttl=window)
        for ident in _login_idents(ip=ip, username=username)
    ]
    if any(count > limit for count in counts):
        return max(1, math.ceil((index + 1) * window - now))
    return None


def login_attempt_release(*, ip: str, username: str) -> None:
    """The attempt reserved was not a wrong password (it succeeded, or the account is inactive): give it back."""
    if settings.LOGIN_FAILURE_LIMIT <= 0:
        return
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    index = int(time.time() // window)
    for ident in _login_idents(ip=ip, username=username):
        counter_add(_failure_key("login", ident, index), -1, ttl=window)


def login_failures_clear(*, username: str) -> None:
    """After a sign-in succeeds: the account's count starts over (the address's does not)."""
    failures_clear(scope="login", ident=_account_ident(username), window=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def api_key_failures_retry_after(*, ip: str) -> int | None:
    return failures_retry_after(
        scope="key",
        idents=[f"ip:{ip}"],
        limit=settings.API_KEY_FAILURE_LIMIT,
        window=settings.API_KEY_FAILURE_WINDOW_SECONDS,
    )


def api_key_failure_add(*, ip: str) -> None:
    failures_add(
        scope="key",
        idents=[f"ip:{ip}"],
        limit=settings.API_KEY_FAILURE_LIMIT,
        window=settings.API_KEY_FAILURE_WINDOW_SECONDS,
    )
