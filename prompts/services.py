"""Writes of the prompt library. Only the owner edits or deletes a prompt."""

from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import User
from platform_site.exceptions import Conflict, PermissionDenied

from .models import SystemPrompt

EDITABLE_FIELDS = ("name", "content", "description", "visibility")


def _ensure_owner(*, prompt: SystemPrompt, user: User) -> None:
    if prompt.owner_id != user.pk:
        raise PermissionDenied("Only the owner can change this prompt.")


def prompt_create(*, owner: User, name: str, content: str, description: str = "", visibility: str) -> SystemPrompt:
    try:
        with transaction.atomic():
            return SystemPrompt.objects.create(
                owner=owner, name=name, content=content, description=description, visibility=visibility
            )
    except IntegrityError as exc:
        raise Conflict(f"You already have a prompt named {name!r}.", code="duplicate_name") from exc


def prompt_update(*, prompt: SystemPrompt, user: User, data: dict[str, Any]) -> SystemPrompt:
    _ensure_owner(prompt=prompt, user=user)
    fields = [field for field in EDITABLE_FIELDS if field in data]
    for field in fields:
        setattr(prompt, field, data[field])
    if not fields:
        return prompt
    try:
        with transaction.atomic():
            prompt.save(update_fields=[*fields, "updated_at"])
    except IntegrityError as exc:
        raise Conflict(f"You already have a prompt named {data.get('name')!r}.", code="duplicate_name") from exc
    return prompt


@transaction.atomic
def prompt_delete(*, prompt: SystemPrompt, user: User) -> None:
    _ensure_owner(prompt=prompt, user=user)
    prompt.delete()
