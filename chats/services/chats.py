"""Writes of chats: create, update, delete. The chat engine (turns) builds on these."""

from typing import Any

from django.db import transaction

from accounts.models import User
from chats.models import Chat
from mcp_servers.models import McpServer
from platform_site.exceptions import ValidationFailed
from prompts.models import SystemPrompt
from prompts.selectors import prompt_list
from providers.models import Provider


def _resolve_provider(name: str | None) -> Provider | None:
    if not name:
        return None
    provider = Provider.objects.filter(name=name).first()
    if provider is None:
        raise ValidationFailed(f"Unknown provider {name!r}.", code="unknown_provider", details={"provider": [name]})
    return provider


def _resolve_prompt(prompt_id: int | None, user: User) -> SystemPrompt | None:
    if prompt_id is None:
        return None
    prompt = prompt_list(user=user).filter(pk=prompt_id).first()
    if prompt is None:
        raise ValidationFailed(
            f"System prompt {prompt_id} not found.",
            code="unknown_system_prompt",
            details={"system_prompt_id": [prompt_id]},
        )
    return prompt


def _resolve_servers(names: list[str]) -> list[McpServer]:
    servers = list(McpServer.objects.filter(name__in=names))
    missing = sorted(set(names) - {server.name for server in servers})
    if missing:
        raise ValidationFailed(
            f"Unknown MCP server(s): {', '.join(missing)}.", code="unknown_mcp_server", details={"mcp_servers": missing}
        )
    return servers


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
        provider=_resolve_provider(provider),
        model=model,
        system_prompt=_resolve_prompt(system_prompt_id, owner),
    )
    if mcp_servers:
        chat.mcp_servers.set(_resolve_servers(mcp_servers))
    return chat


@transaction.atomic
def chat_update(*, chat: Chat, data: dict[str, Any]) -> Chat:
    fields = []
    if "title" in data:
        chat.title = data["title"]
        fields.append("title")
    if "provider" in data:
        chat.provider = _resolve_provider(data["provider"])
        fields.append("provider")
    if "model" in data:
        chat.model = data["model"]
        fields.append("model")
    if "system_prompt_id" in data:
        chat.system_prompt = _resolve_prompt(data["system_prompt_id"], chat.owner)
        fields.append("system_prompt")
    if "mcp_servers" in data:
        chat.mcp_servers.set(_resolve_servers(data["mcp_servers"] or []))
    chat.save(update_fields=[*fields, "updated_at"])
    return chat


@transaction.atomic
def chat_delete(*, chat: Chat) -> None:
    chat.delete()
