"""Reads for users and API keys, always scoped to the caller."""

import time

from django.conf import settings
from django.db.models import QuerySet

from platform_site.exceptions import NotFound

from .models import ApiKey, User
from .services import KEY_SCHEME, api_key_hash


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner=user)


def api_key_get(*, key_id: int, user: User) -> ApiKey:
    api_key = ApiKey.objects.filter(owner=user, pk=key_id).first()
    if api_key is None:
        raise NotFound("API key not found.")
    return api_key


# Every request authenticates: each process keeps a key's row (with its owner) for API_KEY_CACHE_SECONDS.
# A save of a key or a user (revoking, limits) forgets them at once in that process; other processes follow within
# that many seconds. Expiry is checked on every request against the kept row.
_found: dict[str, tuple[float, ApiKey]] = {}
_FOUND_LIMIT = 10_000


def _well_formed_hash(raw_key: str) -> str | None:
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    # Looked up by its hash (unique index): the secret itself is never compared
    # byte by byte, so response time tells nothing about it.
    return api_key_hash(raw_key)


def _kept(key_hash: str) -> ApiKey | None:
    kept = _found.get(key_hash)
    if kept is not None and time.monotonic() - kept[0] < settings.API_KEY_CACHE_SECONDS:
        return kept[1]
    return None


def api_key_seen(*, raw_key: str) -> bool:
    """Whether this process found this key since its lookups were last dropped (kept or stale); never a query."""
    key_hash = _well_formed_hash(raw_key)
    return key_hash is not None and key_hash in _found


def api_key_find(*, raw_key: str) -> ApiKey | None:
    """The key row a presented secret belongs to, or None; revoked and expired keys included."""
    key_hash = _well_formed_hash(raw_key)
    if key_hash is None:
        return None
    api_key = _kept(key_hash)
    if api_key is None:
        api_key = ApiKey.objects.select_related("owner").filter(key_hash=key_hash).first()
        if api_key is not None:
            if len(_found) >= _FOUND_LIMIT:
                _found.clear()
            _found[key_hash] = (time.monotonic(), api_key)
    return api_key


def api_key_cache_clear() -> None:
    _found.clear()
