"""What the OpenAI- and Anthropic-compatible fronts (/v1) share: who calls, which model, and the engine's turn.

A front translates its wire shape to the canonical conversation (providers.types) and back; everything
between is the engine's own turn (chats.services.turns): the same limits, budgets, usage rows, MCP tools,
approvals and storage as the platform's own API. This module holds the parts both fronts need:

- ``front_caller``: the platform API key from ``Authorization: Bearer`` or ``x-api-key``;
- ``model_target`` / ``models_listing``: ``provider/model`` and the admin's aliases (ModelAlias);
- ``front_turn_start``: a FrontTurn prepared and started, a TurnHandle back;
- ``front_result``: a finished (or waiting) turn's outcome, for a non-streamed answer;
- ``FrontError``: every refusal, with status, code, message, the parameter at fault and a retry delay,
  which each front renders in its own error shape.
"""

import json
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import api_key_authenticate, api_key_from_headers
from accounts.models import ApiKey, User
from platform_site.db import run_db
from platform_site.exceptions import ApplicationError, NotFound, ValidationFailed
from providers.registry import adapter_class
from providers.selectors import provider_cached, provider_list, provider_models
from providers.types import GenerationOptions, Message, ToolSpec

from ..events import (
    ClientToolCalls,
    ElicitationRequired,
    ErrorEvent,
    Event,
    TextDelta,
    ThinkingDelta,
    ToolApprovalRequired,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
    UsageReport,
)
from ..models import ModelAlias
from ..services.turns import TurnHandle, TurnRequest, turn_prepare, turn_start

# The status of a turn that failed upstream, by its error event's code (as the platform's own API answers).
TURN_ERROR_STATUS = {
    "provider_rate_limited": 429,
    "provider_unavailable": 503,
    "provider_timeout": 504,
    "provider_authentication_failed": 502,
    "provider_bad_request": 400,
    "storage_failed": 503,
}


class FrontError(Exception):
    """A refusal a front renders in its own error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.details = details

    @classmethod
    def from_exception(cls, exc: Exception) -> "FrontError":
        """The domain and authentication exceptions the engine and accounts raise, as a FrontError."""
        if isinstance(exc, FrontError):
            return exc
        if isinstance(exc, ApplicationError):
            param = None
            if isinstance(exc.details, dict) and len(exc.details) == 1:
                (param,) = exc.details
            return cls(
                exc.status_code,
                exc.code,
                exc.message,
                param=param if isinstance(param, str) else None,
                retry_after=getattr(exc, "retry_after", None),
                details=exc.details,
            )
        if isinstance(exc, drf_exceptions.Throttled):
            wait = getattr(exc, "wait", None)
            return cls(429, "too_many_failed_attempts", str(exc.detail), retry_after=int(wait or 1))
        if isinstance(exc, drf_exceptions.APIException):
            codes = exc.get_codes()
            return cls(exc.status_code, codes if isinstance(codes, str) else "invalid_api_key", str(exc.detail))
        raise exc


# --- request bodies -------------------------------------------------------------------------------------


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def json_strict(data: str | bytes) -> Any:
    """``json.loads`` for what clients send: ValueError for NaN and Infinity (which PostgreSQL cannot store),
    numbers too large for a float, and nesting too deep to parse."""
    try:
        return json.loads(data, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("The JSON is nested too deeply.") from exc


# --- who calls ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: User
    api_key: ApiKey


async def front_caller(request: HttpRequest) -> Caller:
    """The caller by their platform API key (``Authorization: Bearer`` or ``x-api-key``); FrontError 401/429."""
    raw_key = api_key_from_headers(request.headers)
    if raw_key is None:
        raise FrontError(
            401, "missing_api_key", "No API key: send the platform API key as a Bearer token or in x-api-key."
        )
    try:
        api_key = await run_db(api_key_authenticate, raw_key, client_ip=request.META.get("REMOTE_ADDR", ""))
    except drf_exceptions.APIException as exc:
        raise FrontError.from_exception(exc) from exc
    return Caller(user=api_key.owner, api_key=api_key)


# --- which model ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTarget:
    """What a request's ``model`` names: a provider's model, or an alias with its presets."""

    id: str
    provider: str
    model: str
    alias: bool = False
    system_prompt_id: int | None = None
    mcp_servers: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


# Aliases change when an admin edits one: each process reads them again after CONFIG_CACHE_SECONDS, as it
# does providers (providers.selectors), so a turn's model costs no query.
_aliases: dict[str, tuple[float, ModelTarget | None]] = {}


def model_alias_cache_clear() -> None:
    _aliases.clear()


MODEL_NAME_MAX = 301  # a provider's name (50), "/", a model id (250)
ALIASES_KEPT = 1000  # names looked up (misses too) kept per process; past that the cache starts over


def _alias_cached(name: str) -> ModelTarget | None:
    now = time.monotonic()
    entry = _aliases.get(name)
    if entry is None or now - entry[0] > settings.CONFIG_CACHE_SECONDS:
        if len(_aliases) >= ALIASES_KEPT:
            _aliases.clear()
        alias = (
            ModelAlias.objects.select_related("provider")
            .prefetch_related("mcp_servers")
            .filter(name=name, enabled=True, provider__enabled=True)
            .first()
        )
        target = None
        if alias is not None:
            target = ModelTarget(
                id=alias.name,
                provider=alias.provider.name,
                model=alias.model,
                alias=True,
                system_prompt_id=alias.system_prompt_id,
                mcp_servers=tuple(sorted(server.name for server in alias.mcp_servers.all())),
                options=dict(alias.options or {}),
            )
        entry = _aliases[name] = (now, target)
    return entry[1]


def model_target(name: str) -> ModelTarget:
    """The enabled alias called ``name``, or ``provider/model`` on an enabled provider; NotFound otherwise."""
    if len(name) > MODEL_NAME_MAX:
        raise ValidationFailed(
            f"model is longer than {MODEL_NAME_MAX} characters.", code="invalid_value", details={"model": ["Too long."]}
        )
    target = _alias_cached(name)
    if target is not None:
        return target
    provider_name, slash, model = name.partition("/")
    if slash and model:
        provider = provider_cached(provider_name)
        if provider is not None and provider.enabled:
            return ModelTarget(id=name, provider=provider_name, model=model)
    raise NotFound(
        f"The model {name!r} does not exist: use an alias or provider/model from /v1/models.",
        code="model_not_found",
        details={"model": [f"Unknown: {name}."]},
    )


@dataclass(frozen=True)
class ListedModel:
    id: str
    owned_by: str
    created: int
    description: str = ""
    alias_of: str | None = None


async def models_listing() -> list[ListedModel]:
    """Every enabled provider's models as ``provider/model`` (its cached list and admin rows), then the aliases."""
    providers = await run_db(provider_list)
    listed: list[ListedModel] = []
    for provider in providers:
        if not provider.enabled:
            continue
        created = int(provider.created_at.timestamp())
        listing = await provider_models(provider=provider)
        listed += [ListedModel(f"{provider.name}/{info.id}", provider.name, created) for info in listing.models]
    aliases = await run_db(
        lambda: list(ModelAlias.objects.select_related("provider").filter(enabled=True, provider__enabled=True))
    )
    listed += [
        ListedModel(
            alias.name,
            "platform",
            int(alias.created_at.timestamp()),
            description=alias.description,
            alias_of=f"{alias.provider.name}/{alias.model}",
        )
        for alias in aliases
    ]
    return listed


# --- the turn ------------------------------------------------------------------------------------------


@dataclass
class FrontTurn:
    """A front's request in canonical terms."""

    model: str
    conversation: list[Message]
    system: str | None = None
    client_tools: list[ToolSpec] = field(default_factory=list)
    # Only the fields the request set; the alias's defaults fill the rest.
    options: dict[str, Any] = field(default_factory=dict)
    mcp_servers: list[str] | None = None  # None: the alias's (none for provider/model)
    store: bool = True
    chat_id: int | None = None  # continue this stored chat: its history first, then ``conversation``


async def front_turn_start(caller: Caller, turn: FrontTurn) -> tuple[TurnHandle, ModelTarget]:
    """Prepare and start ``turn`` for ``caller``: the running turn and the model it resolved to.

    Raises FrontError for everything a request can get wrong (unknown model, a parameter the provider cannot
    honour, limits, a busy chat), before any provider is called.
    """
    try:
        target, options = await run_db(_front_target, turn)
        servers = list(target.mcp_servers) if turn.mcp_servers is None else turn.mcp_servers
        title = next((m.text for m in reversed(turn.conversation) if m.role == "user" and m.text), "") or "API chat"
        request = TurnRequest(
            message=title,
            provider=target.provider,
            model=target.model,
            system_prompt_id=target.system_prompt_id,
            mcp_servers=servers,
            options=options,
            conversation=turn.conversation,
            system=turn.system,
            client_tools=turn.client_tools,
            store=turn.store,
        )
        prepared = await turn_prepare(
            user=caller.user, chat_id=turn.chat_id, request=request, api_key=caller.api_key, count_request=True
        )
        return await turn_start(prepared), target
    except ApplicationError as exc:
        if exc.code in ("unknown_model", "model_disabled"):  # the SDKs' NotFoundError, as for an unknown alias
            raise FrontError(404, "model_not_found", exc.message, param="model") from exc
        raise FrontError.from_exception(exc) from exc
    except drf_exceptions.APIException as exc:
        raise FrontError.from_exception(exc) from exc
    except PydanticValidationError as exc:  # options the request and the alias's defaults make together
        problem = exc.errors()[0]
        param = ".".join(str(part) for part in problem["loc"]) or None
        raise FrontError(400, "invalid_value", f"{param}: {problem['msg']}", param=param) from exc


def _front_target(turn: FrontTurn) -> tuple[ModelTarget, GenerationOptions]:
    """The model ``turn`` names and its options, checked against what the provider can honour (one trip)."""
    target = model_target(turn.model)
    options = GenerationOptions.model_validate({**target.options, **turn.options})
    _check_supported(target, options)
    _check_content(target, turn.conversation)
    return target, options


def _check_supported(target: ModelTarget, options: GenerationOptions) -> None:
    provider = provider_cached(target.provider)
    if provider is None:
        return  # turn_prepare says so
    unsupported = getattr(adapter_class(provider.kind), "unsupported_options", None)
    names: list[str] = list(unsupported(options)) if unsupported is not None else []
    if names:
        raise FrontError(
            400,
            "unsupported_parameter",
            f"{', '.join(names)} cannot be honoured by {target.provider} ({provider.kind}).",
            param=names[0],
        )


def _check_content(target: ModelTarget, conversation: list[Message]) -> None:
    """A 400 for what the client sends now that the provider cannot take (images without vision, image urls)."""
    provider = provider_cached(target.provider)
    if provider is None:
        return  # turn_prepare says so
    check = getattr(adapter_class(provider.kind), "unsupported_content", None)
    names: list[str] = list(check(conversation)) if check is not None else []
    if names:
        what = "images" if names[0] == "image" else "image urls (send the image as a base64 data: URL)"
        raise FrontError(
            400,
            "unsupported_content",
            f"{target.provider} ({provider.kind}) with model {target.model!r} cannot take {what}.",
            param="messages",
        )


@dataclass
class FrontResult:
    """A non-streamed answer's content, whatever the front's shape."""

    chat_id: int | None
    text: str
    thinking: str
    client_calls: list[dict[str, Any]]
    executions: list[dict[str, Any]]  # the MCP tool calls run server-side, in the order the model made them
    input_tokens: int
    output_tokens: int
    cost: str
    # end | tool_calls | length | refused | cancelled | round_limit | error | awaiting_approval | awaiting_input
    finish_reason: str
    pending: list[dict[str, Any]]  # the approvals or questions the turn waits for
    error: ErrorEvent | None
    created: int

    @property
    def error_status(self) -> int | None:
        """The HTTP status of a turn that failed upstream (None when it did not)."""
        if self.error is None or self.finish_reason != "error":
            return None
        return TURN_ERROR_STATUS.get(self.error.code, 502)


async def front_result(handle: TurnHandle) -> FrontResult:
    """The turn's outcome once it is done, or as soon as it waits for a person (it then goes on without us)."""
    events, asked = await handle.result_or_approvals()
    return result_of(events, asked, chat_id=handle.chat_id)


def result_of(
    events: list[Event], asked: list[ToolApprovalRequired | ElicitationRequired], *, chat_id: int | None
) -> FrontResult:
    done = next((event for event in events if isinstance(event, TurnDone)), None)
    final_round = max((event.round for event in events if isinstance(event, TextDelta)), default=0)
    client_calls = [call for event in events if isinstance(event, ClientToolCalls) for call in event.calls]
    errors = [event for event in events if isinstance(event, ErrorEvent)]
    reports = [event for event in events if isinstance(event, UsageReport)]
    if asked:
        finish = "awaiting_approval" if any(isinstance(e, ToolApprovalRequired) for e in asked) else "awaiting_input"
    else:
        finish = done.finish_reason if done is not None else "error"
    return FrontResult(
        chat_id=done.chat_id if done is not None else chat_id,
        text="".join(e.text for e in events if isinstance(e, TextDelta) and e.round == final_round),
        thinking="".join(e.text for e in events if isinstance(e, ThinkingDelta) and e.round == final_round),
        client_calls=client_calls,
        executions=tool_executions(events),
        # A turn that waits for a person has not added up its rounds yet: its reports so far.
        input_tokens=done.input_tokens if done is not None else sum(e.input_tokens for e in reports),
        output_tokens=done.output_tokens if done is not None else sum(e.output_tokens for e in reports),
        cost=f"{done.cost if done is not None else sum((e.cost for e in reports), Decimal(0)):.8f}",
        finish_reason=finish,
        pending=[event.to_dict() for event in asked],
        error=errors[-1] if errors and done is not None and not done.success else None,
        created=int(time.time()),
    )


def tool_executions(events: list[Event]) -> list[dict[str, Any]]:
    """The MCP tool calls the turn ran server-side (``server``, ``tool``, arguments, result), in call order."""
    finished = {event.id: event for event in events if isinstance(event, ToolCallFinished)}
    return [
        {
            "id": start.id,
            "round": start.round,
            "name": start.name,
            "server": start.server,
            "tool": start.tool,
            "arguments": start.arguments,
            "is_error": finished[start.id].is_error,
            "content": finished[start.id].content,
            "duration_ms": finished[start.id].duration_ms,
        }
        for start in events
        if isinstance(start, ToolCallStarted) and start.id in finished
    ]
