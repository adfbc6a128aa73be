"""Preparing a turn: check everything that can be wrong with a request and store nothing.

A bad request (chat, provider, model, prompt variables, tools, limits) is a
clean 4xx before any provider is called. The rows it resolves come from the
selectors the other apps already have.
"""

from dataclasses import dataclass, field

from django.conf import settings

from accounts.models import ApiKey, User
from accounts.throttling import rate_limit_check_user
from mcp_servers.selectors import (
    mcp_needs_setup_error,
    mcp_needs_sign_in_error,
    mcp_servers_needing_sign_in,
    mcp_servers_resolve,
    mcp_servers_usable_by,
    mcp_tool_policies,
    mcp_user_vars_missing,
)
from platform_site.db import run_db
from platform_site.exceptions import NotFound, ValidationFailed
from prompts.models import SystemPrompt, Visibility
from prompts.selectors import prompt_resolve
from prompts.templating import prompt_render
from providers.models import Provider, ProviderModel
from providers.selectors import provider_check_model, provider_for_turn
from providers.types import GenerationOptions, Message, TextBlock, ToolSpec
from usage.limits import limits_check_budget, limits_check_tokens

from ...models import Chat
from .attachments import Attachment, attachments_read


@dataclass
class TurnRequest:
    message: str
    provider: str | None = None
    model: str | None = None
    system_prompt_id: int | None = None
    variables: dict[str, str] = field(default_factory=dict)
    mcp_servers: list[str] | None = None
    tools: bool = True
    options: GenerationOptions = field(default_factory=GenerationOptions)
    # MCP resources whose content goes to the model with the message (``attachments``).
    attachments: list[Attachment] = field(default_factory=list)
    # The OpenAI- and Anthropic-compatible fronts (/v1) bring a conversation and tools of their own:
    # what this turn adds before the model answers (ends with a user message or tool results), instead of
    # ``message`` (which then only titles a new chat);
    conversation: list[Message] | None = None
    # their system text, after the library prompt's;
    system: str | None = None
    # tools the client runs itself: the turn ends at the model's calls of them (``ClientToolCalls``);
    client_tools: list[ToolSpec] = field(default_factory=list)
    # False: the chat exists only while the turn runs (its usage rows stay).
    store: bool = True


@dataclass
class PreparedTurn:
    chat: Chat  # unsaved when the turn creates its chat
    user: User
    api_key: ApiKey | None
    provider: Provider
    model: str
    price_row: ProviderModel | None
    system: str | None
    message: str
    tool_servers: list[str]  # the servers whose tools are offered: only ever ones the user may use
    tools_enabled: bool
    options: GenerationOptions
    # Approval settings of the offered servers (mcp_servers.selectors.mcp_tool_policies), and the tools the
    # user approved for the rest of this chat.
    tool_policies: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    remembered: frozenset[str] = frozenset()
    # The attached resources as read for this turn: stored after the message's own text, replayed with it.
    attachments: list[TextBlock] = field(default_factory=list)
    # The fronts' (see TurnRequest): their conversation, their own tools, and whether the chat is kept.
    conversation: list[Message] | None = None
    client_tools: list[ToolSpec] = field(default_factory=list)
    ephemeral: bool = False
    # False when nobody reads the reply as it is written (a JSON answer): the model is asked for its whole
    # reply at once, which costs less than a stream, and the turn's events carry each round's text in one.
    streamed: bool = True

    def user_message(self) -> Message:
        """The user message as stored and as the model sees it: the text, then each attached resource."""
        return Message(role="user", content=[TextBlock(text=self.message), *self.attachments])

    def incoming(self) -> list[Message]:
        """What the turn stores before the model answers: the user message, or a front's conversation."""
        return self.conversation if self.conversation is not None else [self.user_message()]


async def turn_prepare(
    *,
    user: User,
    chat_id: int | None,
    request: TurnRequest,
    api_key: ApiKey | None = None,
    count_request: bool = False,
) -> PreparedTurn:
    """Validate a turn; raises the API's domain exceptions (4xx) and stores nothing.

    ``count_request`` counts the turn on the user's request rate (interfaces DRF does not throttle).
    """
    prepared = await run_db(_prepare, user=user, chat_id=chat_id, request=request, api_key=api_key, count=count_request)
    if prepared.price_row is None:
        await provider_check_model(provider=prepared.provider, model=prepared.model)
    if request.attachments:  # read as the user, before anything is stored or the model is called
        prepared.attachments = await attachments_read(user=user, attachments=request.attachments)
    return prepared


def _prepare(
    *, user: User, chat_id: int | None, request: TurnRequest, api_key: ApiKey | None, count: bool
) -> PreparedTurn:
    if count:
        rate_limit_check_user(user=user)
    if request.conversation is None:
        _check_message(request.message)
    else:
        _check_conversation(request.conversation)
    if request.attachments:
        # A server the user may not use is as unknown to them as one that does not exist: a 400.
        mcp_servers_resolve(names=sorted({attachment.server for attachment in request.attachments}), user=user)
    chat: Chat | None = None
    if chat_id is not None:
        chat = (
            Chat.objects.select_related("provider", "system_prompt")
            .prefetch_related("mcp_servers")
            .filter(pk=chat_id, owner=user)
            .first()
        )
        if chat is None:
            raise NotFound("Chat not found.")

    provider_name = request.provider or (chat.provider.name if chat and chat.provider else settings.DEFAULT_PROVIDER)
    model = request.model or (chat.model if chat and chat.model and not request.provider else "") or ""
    if not model and provider_name == settings.DEFAULT_PROVIDER:
        model = settings.DEFAULT_MODEL
    provider, price_row = provider_for_turn(name=provider_name, model=model)
    if not model:
        raise ValidationFailed(
            "No model given, and no default for this chat or provider.",
            code="no_model",
            details={"model": ["Required."]},
        )

    prompt: SystemPrompt | None = None
    if request.system_prompt_id is not None:
        prompt = prompt_resolve(prompt_id=request.system_prompt_id, user=user)
    elif chat is not None and chat.system_prompt_id is not None:
        # The chat's prompt as the user may see it now: one made private by its owner is not used.
        prompt = _visible_chat_prompt(chat=chat, user=user)
    if prompt is None and request.variables:
        raise ValidationFailed(
            "Variables were given but there is no system prompt.",
            code="invalid_variables",
            details={"unknown": sorted(request.variables), "missing": []},
        )
    system = prompt_render(content=prompt.content, variables=request.variables) if prompt else None
    if request.system:
        system = f"{system}\n\n{request.system}" if system else request.system

    servers: list[str]
    if not request.tools:
        servers = []
    elif request.mcp_servers is not None:
        # A server the user may not use is as unknown to them as one that does not exist: a 400.
        servers = sorted(server.name for server in mcp_servers_resolve(names=request.mcp_servers, user=user))
        # One whose user_vars the user has not set yet cannot run for them: a 400 naming what to set.
        missing = {name: names for name, names in mcp_user_vars_missing(user=user).items() if name in servers}
        if missing:
            raise mcp_needs_setup_error(missing=missing)
        # One that uses OAuth and the user has not connected their account to yet: a 400 too.
        signing = mcp_servers_needing_sign_in(user=user).intersection(servers)
        if signing:
            raise mcp_needs_sign_in_error(servers=sorted(signing))
    else:
        usable = mcp_servers_usable_by(user=user)
        chosen = [server.name for server in chat.mcp_servers.all()] if chat is not None else []
        # The chat's own choice (none = all) may name a server closed to its owner since: it is left out,
        # as is one that needs the user's setup (their own values) first.
        offered = usable.difference(mcp_user_vars_missing(user=user), mcp_servers_needing_sign_in(user=user))
        servers = sorted(offered.intersection(chosen) if chosen else offered)

    limits_check_tokens(user=user)
    limits_check_budget(user=user)
    return PreparedTurn(
        chat=chat if chat is not None else Chat(owner=user),  # created when the turn starts
        user=user,
        api_key=api_key,
        provider=provider,
        model=model,
        price_row=price_row,
        system=system,
        message=request.message,
        tool_servers=servers,
        tools_enabled=request.tools,
        options=request.options,
        tool_policies=mcp_tool_policies(names=servers),
        remembered=frozenset(chat.approved_tools) if chat is not None else frozenset(),
        conversation=request.conversation,
        client_tools=list(request.client_tools),
        ephemeral=not request.store,
    )


def _check_message(message: str) -> None:
    if not message.strip():
        raise ValidationFailed("The message is empty.", code="empty_message", details={"message": ["Empty."]})
    if len(message) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ValidationFailed(
            f"The message is longer than {settings.CHAT_MAX_MESSAGE_CHARS} characters.",
            code="message_too_long",
            details={"message": [f"At most {settings.CHAT_MAX_MESSAGE_CHARS} characters."]},
        )


def _check_conversation(conversation: list[Message]) -> None:
    if not conversation:
        raise ValidationFailed("No messages.", code="empty_message", details={"messages": ["Empty."]})
    if conversation[-1].role == "assistant":
        raise ValidationFailed(
            "The last message must be the user's or tool results, for the model to answer.",
            code="invalid_conversation",
            details={"messages": ["Ends with an assistant message."]},
        )
    for index, message in enumerate(conversation):
        if not message.content:
            raise ValidationFailed(
                f"Message {index} is empty.", code="empty_message", details={"messages": [f"{index}: empty."]}
            )
        if len(message.text) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise ValidationFailed(
                f"Message {index} is longer than {settings.CHAT_MAX_MESSAGE_CHARS} characters.",
                code="message_too_long",
                details={"messages": [f"{index}: at most {settings.CHAT_MAX_MESSAGE_CHARS} characters."]},
            )


def _visible_chat_prompt(*, chat: Chat, user: User) -> SystemPrompt | None:
    prompt = chat.system_prompt
    if prompt is None or prompt.owner_id == user.pk or prompt.visibility == Visibility.SHARED:
        return prompt
    return None
