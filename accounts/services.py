"""Writes for users and API keys."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from platform_site.exceptions import ValidationFailed

from .models import ApiKey, User

KEY_SCHEME = "llmp"
# last_used_at is refreshed at most this often per key, so authenticating a
# request is normally read-only.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_key_hash(raw_key: str) -> str:
    # The secret is 256 random bits: a fast hash is enough, a slow KDF adds nothing.
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class GeneratedKey:
    raw: str
    prefix: str
    key_hash: str


def api_key_generate() -> GeneratedKey:
    prefix = secrets.token_hex(6)
    raw = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    return GeneratedKey(raw=raw, prefix=prefix, key_hash=api_key_hash(raw))


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str


def api_key_create(
    *, owner: User, name: str, expires_at: datetime | None = None, created_with: ApiKey | None = None
) -> IssuedKey:
    """A new key. One made with a key (``created_with``) never outlives it, so a short-lived key can't mint
    a permanent one; a browser session may make any key."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.", details={"expires_at": ["Must be in the future."]})
    limit = created_with.expires_at if created_with is not None else None
    if limit is not None and (expires_at is None or expires_at > limit):
        message = f"A key created with an API key cannot outlive it: expires_at must be at most {limit.isoformat()}."
        raise ValidationFailed(message, code="expires_after_creating_key", details={"expires_at": [message]})
    generated = api_key_generate()
    api_key = ApiKey.objects.create(
        owner=owner,
        name=name,
        prefix=generated.prefix,
        key_hash=generated.key_hash,
        expires_at=expires_at,
        created_with=created_with,
    )
    return IssuedKey(api_key=api_key, secret=generated.raw)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key and every key made with it, at any depth: a stolen key's offspring go with it."""
    now = timezone.now()
    if api_key.revoked_at is None:
        api_key.revoked_at = now
        api_key.save(update_fields=["revoked_at"])  # the save drops kept lookups (accounts.apps)
    parents = [api_key.pk]
    while parents:
        children = list(ApiKey.objects.filter(created_with__in=parents).values_list("pk", flat=True))
        ApiKey.objects.filter(pk__in=children, revoked_at__isnull=True).update(revoked_at=now)
        parents = children
    from .selectors import api_key_cache_clear  # selectors import this module

    api_key_cache_clear()  # update() sends no post_save
    return api_key


def api_key_mark_used(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # The filter makes concurrent requests write at most once per interval.
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    api_key.last_used_at = now


@transaction.atomic
def api_keys_purge(*, older_than: timedelta) -> int:
    """Delete keys that expired or were revoked more than ``older_than`` ago."""
    cutoff = timezone.now() - older_than
    deleted, _ = ApiKey.objects.filter(Q(revoked_at__lt=cutoff) | Q(expires_at__lt=cutoff)).delete()
    return deleted


def user_ensure_admin(*, username: str, email: str, password: str) -> tuple[User, bool]:
    """Create the superuser unless a user with that name exists. Returns (user, created)."""
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        return existing, False
    user = User.objects.create_superuser(username=username, email=email, password=password)
    return user, True
