"""Writes of chats: create, update, delete. The chat engine (turns) builds on these."""

from typing import Any

from django.db import transaction

from accounts.models import User
from chats.models import Chat
from mcp_servers.selectors import mcp_servers_resolve
from prompts.selectors import prompt_resolve
from providers.selectors import provider_resolve


@transaction.atomic
def chat_create(
    *,
    owner: User,
    title: str = "",
    provider: str | None = None,
    model: str = "",
    system_prompt_id: int | None = None,
    mcp_servers: list[str] | None = None,
) -> Chat:
    chat = Chat.objects.create(
        owner=owner,
        title=title,
        provider=provider_resolve(name=provider) if provider else None,
        model=model,
        system_prompt=prompt_resolve(prompt_id=system_prompt_id, user=owner) if system_prompt_id is not None else None,
    )
    if mcp_servers:
        chat.mcp_servers.set(mcp_servers_resolve(names=mcp_servers, user=owner))
    return chat


@transaction.atomic
def chat_update(*, chat: Chat, data: dict[str, Any]) -> Chat:
    fields = []
    if "title" in data:
        chat.title = data["title"]
        fields.append("title")
    if "provider" in data:
        chat.provider = provider_resolve(name=data["provider"]) if data["provider"] else None
        fields.append("provider")
    if "model" in data:
        chat.model = data["model"]
        fields.append("model")
    if "system_prompt_id" in data:
        prompt_id = data["system_prompt_id"]
        chat.system_prompt = prompt_resolve(prompt_id=prompt_id, user=chat.owner) if prompt_id is not None else None
        fields.append("system_prompt")
    if "mcp_servers" in data:
        chat.mcp_servers.set(mcp_servers_resolve(names=data["mcp_servers"] or [], user=chat.owner))
    chat.save(update_fields=[*fields, "updated_at"])
    return chat


@transaction.atomic
def chat_delete(*, chat: Chat) -> None:
    chat.delete()
