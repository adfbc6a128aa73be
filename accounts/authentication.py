"""DRF authentication by API key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from collections.abc import Mapping

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey, User
from .selectors import api_key_find
from .services import api_key_mark_used


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    get = headers.get
    auth = get("Authorization") or get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = get("X-API-Key") or get("x-api-key")
    return key.strip() if key else None


def api_key_check(raw_key: str) -> ApiKey:
    """The active key for ``raw_key``, or AuthenticationFailed naming what is wrong."""
    api_key = api_key_find(raw_key=raw_key)
    if api_key is None:
        raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if api_key.revoked_at is not None:
        raise exceptions.AuthenticationFailed("API key has been revoked.", code="api_key_revoked")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise exceptions.AuthenticationFailed("API key has expired.", code="api_key_expired")
    if not api_key.owner.is_active:
        raise exceptions.AuthenticationFailed("User account is disabled.", code="user_inactive")
    return api_key


def api_key_authenticate(raw_key: str) -> ApiKey:
    """``api_key_check``, and the key's last use noted (at most once a minute)."""
    api_key = api_key_check(raw_key)
    api_key_mark_used(api_key=api_key)
    return api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw_key = api_key_from_headers(request.headers)
        if raw_key is None:
            return None
        api_key = api_key_authenticate(raw_key)
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
