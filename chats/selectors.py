"""Reads of chats and their history, always scoped to the caller."""

from django.db.models import Count, QuerySet

from accounts.models import User
from platform_site.exceptions import NotFound

from .models import Chat, Message


def chat_list(*, user: User) -> QuerySet[Chat]:
    return (
        Chat.objects.filter(owner=user)
        .select_related("provider")
        .prefetch_related("mcp_servers")
        .annotate(message_count=Count("messages"))
        .order_by("-updated_at", "-id")
    )


def chat_get(*, chat_id: int, user: User) -> Chat:
    chat = chat_list(user=user).filter(pk=chat_id).first()
    if chat is None:
        raise NotFound("Chat not found.")
    return chat


def message_list(*, chat: Chat) -> QuerySet[Message]:
    return Message.objects.filter(chat=chat).order_by("position").prefetch_related("tool_executions")
