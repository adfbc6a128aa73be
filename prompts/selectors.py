"""Reads of the prompt library: a user sees their own prompts and shared ones."""

from django.db.models import Q, QuerySet

from accounts.models import User
from platform_site.exceptions import NotFound, ValidationFailed

from .models import SystemPrompt, Visibility


def prompt_list(*, user: User) -> QuerySet[SystemPrompt]:
    return SystemPrompt.objects.filter(Q(owner=user) | Q(visibility=Visibility.SHARED)).select_related("owner")


def prompt_get(*, prompt_id: int, user: User) -> SystemPrompt:
    prompt = prompt_list(user=user).filter(pk=prompt_id).first()
    if prompt is None:
        raise NotFound("System prompt not found.")
    return prompt


def prompt_resolve(*, prompt_id: int, user: User) -> SystemPrompt:
    """A prompt ``user`` may use (own or shared, as it is now), or ValidationFailed ``unknown_system_prompt``."""
    prompt = prompt_list(user=user).filter(pk=prompt_id).first()
    if prompt is None:
        raise ValidationFailed(
            f"System prompt {prompt_id} not found.",
            code="unknown_system_prompt",
            details={"system_prompt_id": [prompt_id]},
        )
    return prompt
