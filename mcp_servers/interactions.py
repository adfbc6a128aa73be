"""What a server asks of the host in the middle of a tool call: sampling and elicitation, as plain data.

The connection (``connection.py``) turns the SDK's ``sampling/createMessage`` and ``elicitation/create``
requests into these, finds the tool call they belong to (its ``CallContext``, handed down by whoever made
the call: the chat engine) and answers the server with what comes back. A request with no call behind it
(Celery, a management command, a staff call over the API) is answered here by the server's settings alone:
sampling runs only with ``sampling_without_user`` on the server's own provider, an elicitation is declined
or accepted with the schema's defaults (``elicitation_non_interactive``).
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from accounts.models import User
from accounts.throttling import rate_limit_check_user
from platform_site.db import run_db
from platform_site.exceptions import ApplicationError
from providers.errors import ProviderError
from providers.models import Provider, ProviderModel
from providers.pricing import cost_for
from providers.registry import adapter_for
from providers.selectors import provider_for_turn
from providers.types import GenerationOptions, Message, TextBlock
from usage.limits import limits_add_tokens, limits_check_budget, limits_check_tokens
from usage.services import usage_record_create

from .models import McpServer, NonInteractive, Policy

logger = logging.getLogger(__name__)

# The names a sampling approval and an elicitation are stored under as ToolApproval rows (``tool``).
SAMPLING_TOOL = "sampling/createMessage"
ELICITATION_TOOL = "elicitation/create"
# MCP's stop reasons for ours (providers.types.StopReason).
STOP_REASONS = {"end": "endTurn", "length": "maxTokens", "tool_calls": "toolUse", "refused": "refusal"}


class InteractionRefused(Exception):
    """The server's request is answered with an error (policy, no user, a limit, a provider failure)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SamplingRequest:
    messages: list[dict[str, str]]  # [{"role": "user" | "assistant", "text": ...}]
    max_tokens: int
    system_prompt: str | None = None
    temperature: float | None = None
    stop_sequences: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"messages": self.messages, "max_tokens": self.max_tokens}
        if self.system_prompt is not None:
            data["system_prompt"] = self.system_prompt
        return data


@dataclass(frozen=True)
class SamplingResult:
    text: str
    model: str
    stop_reason: str  # MCP's: endTurn, maxTokens, ...


@dataclass(frozen=True)
class ElicitationRequest:
    mode: Literal["form", "url"]
    message: str
    requested_schema: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    elicitation_id: str | None = None  # the server's own id (URL mode)


@dataclass(frozen=True)
class ElicitationAnswer:
    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None


@dataclass(frozen=True)
class ServerInteractionSettings:
    """What the admin set for a server's requests (read when a request comes, so edits apply at once)."""

    server: str
    sampling_policy: str = Policy.ASK
    sampling_provider: str | None = None  # a Provider's name
    sampling_model: str = ""
    sampling_without_user: bool = False
    elicitation_non_interactive: str = NonInteractive.DECLINE


class CallContext(Protocol):
    """The side of one tool call that can answer its server's requests (the chat engine's turn).

    Its methods are awaited on the MCP host's loop and run wherever the call's owner lives.
    ``user_id`` tells a connection's calls apart: requests are only ever shown to that user.
    """

    user_id: int

    async def sample(self, request: SamplingRequest, config: ServerInteractionSettings) -> SamplingResult: ...

    async def elicit(self, request: ElicitationRequest, config: ServerInteractionSettings) -> ElicitationAnswer: ...


def interaction_settings(*, server: str) -> ServerInteractionSettings:
    """The server's settings for sampling and elicitation; the defaults when the row is gone."""
    row = (
        McpServer.objects.filter(name=server)
        .values(
            "sampling_policy",
            "sampling_provider__name",
            "sampling_model",
            "sampling_without_user",
            "elicitation_non_interactive",
        )
        .first()
    )
    if row is None:
        return ServerInteractionSettings(server=server)
    return ServerInteractionSettings(
        server=server,
        sampling_policy=row["sampling_policy"],
        sampling_provider=row["sampling_provider__name"],
        sampling_model=row["sampling_model"],
        sampling_without_user=row["sampling_without_user"],
        elicitation_non_interactive=row["elicitation_non_interactive"],
    )


# --- running a sampling request ------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingRun:
    """A finished sampling call: the answer, and what it cost (for events and the call's record)."""

    result: SamplingResult
    provider: str
    input_tokens: int
    output_tokens: int
    cost: str
    latency_ms: int


def _check_limits(user: User) -> None:
    # The same checks as a turn's (prepare.py): the request rate, tokens per minute, the budget.
    rate_limit_check_user(user=user)
    limits_check_tokens(user=user)
    limits_check_budget(user=user)


def _resolve_provider(name: str, model: str) -> tuple[Provider, ProviderModel | None]:
    return provider_for_turn(name=name, model=model)


async def sampling_run(
    *,
    request: SamplingRequest,
    provider: Provider,
    model: str,
    price_row: ProviderModel | None,
    user: User | None,
    chat_id: int | None = None,
    api_key_id: int | None = None,
) -> SamplingRun:
    """Ask ``provider``'s ``model``; with a ``user``, within their limits and stored as their UsageRecord.

    InteractionRefused for a limit reached or a provider failure: the server gets an error.
    """
    if user is not None:
        try:
            await run_db(_check_limits, user)
        except ApplicationError as exc:
            raise InteractionRefused(f"Sampling refused: {exc.message}") from exc
    messages = [
        Message(role="assistant" if item["role"] == "assistant" else "user", content=[TextBlock(text=item["text"])])
        for item in request.messages
    ]
    options = GenerationOptions(
        max_tokens=request.max_tokens, temperature=request.temperature, stop=request.stop_sequences or None
    )
    try:
        completion = await adapter_for(provider).complete(
            messages=messages, model=model, system=request.system_prompt, options=options
        )
    except ProviderError as exc:
        logger.warning("sampling on %s/%s failed: %s", provider.name, model, exc)
        raise InteractionRefused(f"Sampling failed: the model could not answer ({exc.code}).") from exc
    usage = completion.usage
    cost = cost_for(kind=provider.kind, model=model, usage=usage, override=price_row)
    if user is not None:
        await run_db(
            usage_record_create,
            user_id=user.pk,
            api_key_id=api_key_id,
            chat_id=chat_id,
            provider=provider.name,
            model=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cache_read_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost=cost,
            latency_ms=completion.latency_ms,
        )
        if user.tokens_per_minute is not None:
            await run_db(limits_add_tokens, user_id=user.pk, tokens=usage.input_tokens + usage.output_tokens)
    result = SamplingResult(
        text=completion.message.text,
        model=completion.model or model,
        stop_reason=STOP_REASONS.get(completion.stop_reason, completion.stop_reason),
    )
    return SamplingRun(
        result=result,
        provider=provider.name,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost=f"{cost:.8f}",
        latency_ms=completion.latency_ms,
    )


async def sampling_provider(
    config: ServerInteractionSettings, *, fallback: tuple[Provider, str, ProviderModel | None] | None
) -> tuple[Provider, str, ProviderModel | None]:
    """The server's own sampling provider and model when set, else ``fallback`` (the turn's)."""
    if config.sampling_provider and config.sampling_model:
        try:
            provider, price_row = await run_db(_resolve_provider, config.sampling_provider, config.sampling_model)
        except ApplicationError as exc:
            raise InteractionRefused(f"Sampling is not available: {exc.message}") from exc
        return provider, config.sampling_model, price_row
    if fallback is None:
        raise InteractionRefused("Sampling is not available: no provider is configured for this server.")
    return fallback


# --- no call behind the request ------------------------------------------------------------------


async def sample_without_user(request: SamplingRequest, config: ServerInteractionSettings) -> SamplingResult:
    """A sampling request with no person behind it: refused unless the admin allowed it for this server."""
    if not config.sampling_without_user:
        raise InteractionRefused("Sampling refused: no user is behind this call.")
    provider, model, price_row = await sampling_provider(config, fallback=None)
    run = await sampling_run(request=request, provider=provider, model=model, price_row=price_row, user=None)
    return run.result


def answer_without_user(request: ElicitationRequest, config: ServerInteractionSettings) -> ElicitationAnswer:
    """An elicitation nobody can answer: declined, or accepted with the schema's defaults if the admin says so.

    Accepting needs a form whose required fields all have defaults; otherwise it is declined too.
    """
    from .elicitation import schema_defaults

    if request.mode != "form" or config.elicitation_non_interactive != NonInteractive.ACCEPT_DEFAULTS:
        return ElicitationAnswer(action="decline")
    defaults = schema_defaults(request.requested_schema)
    required = request.requested_schema.get("required") or []
    if any(name not in defaults for name in required):
        return ElicitationAnswer(action="decline")
    return ElicitationAnswer(action="accept", content=defaults)
