"""DRF authentication by API key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Unknown keys are counted per client IP (API_KEY_FAILURE_LIMIT per
API_KEY_FAILURE_WINDOW_SECONDS, in the shared cache); past the limit a key this
process has not found before is refused with 429 before it is looked up.
"""

from collections.abc import Mapping

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, User
from .selectors import api_key_find, api_key_seen
from .services import api_key_mark_used
from .throttling import api_key_failure_add, api_key_failures_retry_after


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    get = headers.get
    auth = get("Authorization") or get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = get("X-API-Key") or get("x-api-key")
    return key.strip() if key else None


def api_key_check(raw_key: str, *, client_ip: str) -> ApiKey:
    """The active key for ``raw_key``, or AuthenticationFailed naming what is wrong.

    Throttled when ``client_ip`` sent too many unknown keys lately.
    """
    # The failure count is read only for a key this process has not found before, so a valid key in use
    # costs no cache round trip, and keeps working while its address is locked out (a guess is never seen).
    if not api_key_seen(raw_key=raw_key):
        retry_after = api_key_failures_retry_after(ip=client_ip)
        if retry_after is not None:
            raise exceptions.Throttled(
                wait=retry_after,
                detail="Too many invalid API keys from this address.",
                code="too_many_failed_attempts",
            )
    api_key = api_key_find(raw_key=raw_key)
    if api_key is None:
        api_key_failure_add(ip=client_ip)
        raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if api_key.revoked_at is not None:
        raise exceptions.AuthenticationFailed("API key has been revoked.", code="api_key_revoked")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed("API key has expired.", code="api_key_expired")
    if not api_key.owner.is_active:
        raise exceptions.AuthenticationFailed("User account is disabled.", code="user_inactive")
    return api_key


def api_key_authenticate(raw_key: str, *, client_ip: str) -> ApiKey:
    """``api_key_check``, and the key's last use noted (at most once a minute)."""
    api_key = api_key_check(raw_key, client_ip=client_ip)
    api_key_mark_used(api_key=api_key)
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw_key = api_key_from_headers(request.headers)
        if raw_key is None:
            return None
        api_key = api_key_authenticate(raw_key, client_ip=request.META.get("REMOTE_ADDR", ""))
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
