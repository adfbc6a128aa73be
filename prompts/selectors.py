"""Reads of the prompt library: a user sees their own prompts and shared ones."""

from django.db.models import Q, QuerySet

from accounts.models import User
from platform_site.exceptions import NotFound

from .models import SystemPrompt, Visibility


def prompt_list(*, user: User) -> QuerySet[SystemPrompt]:
    return SystemPrompt.objects.filter(Q(owner=user) | Q(visibility=Visibility.SHARED)).select_related("owner")


def prompt_get(*, prompt_id: int, user: User) -> SystemPrompt:
    prompt = prompt_list(user=user).filter(pk=prompt_id).first()
    if prompt is None:
        raise NotFound("System prompt not found.")
    return prompt
