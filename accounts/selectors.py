"""Reads for users and API keys, always scoped to the caller."""

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


def api_key_find(*, raw_key: str) -> ApiKey | None:
    """The key row a presented secret belongs to, or None; revoked and expired keys included."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or not parts[1] or not parts[2]:
        return None
    # Looked up by its hash (unique index): the secret itself is never compared
    # byte by byte, so response time tells nothing about it.
    return ApiKey.objects.select_related("owner").filter(key_hash=api_key_hash(raw_key)).first()
