"""The Anthropic-compatible front: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Anthropic's Messages shape in, the engine's turn (``common``), Anthropic's shape out: a Message object, or
its SSE event sequence. Refusals use Anthropic's error shape and statuses, so the anthropic SDK and Claude
Code raise their own exceptions. What the platform adds rides where the SDKs ignore it: a Message's
``platform`` field, and ``platform_*`` stream events.
"""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accounts.throttling import rate_limit_check_user
from platform_site.db import run_db
from platform_site.exceptions import REDIS_AWAY, ApplicationError
from providers.base import TokenCount
from providers.errors import ProviderError
from providers.registry import adapter_for
from providers.selectors import provider_for_turn
from providers.types import (
    CONTENT_BLOCKS,
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolSpec,
)

from ..events import (
    ClientToolCalls,
    ElicitationRequired,
    Event,
    MessageDone,
    TextDelta,
    ThinkingDelta,
    ToolApprovalRequired,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
)
from ..models import Message as MessageRow
from ..services.turns import TurnHandle
from .common import (
    TURN_ERROR_STATUS,
    Caller,
    FrontError,
    FrontResult,
    FrontTurn,
    front_caller,
    front_turn_start,
    json_strict,
    model_target,
    result_of,
)

# Anthropic's error type for each status; the SDK picks its exception class by the status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STOP_REASONS = {"end": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "refused": "refusal"}
# Only Anthropic signs thinking: a signed block a client sends back came from a Claude model.
SIGNING_KIND = "anthropic"
MIN_THINKING_BUDGET = 1024


# --- errors -------------------------------------------------------------------------------------------------


def anthropic_error(error: FrontError) -> JsonResponse:
    """``error`` in Anthropic's shape and status."""
    status, body = error_body(error)
    response = JsonResponse(body, status=status)
    response["request-id"] = f"req_{secrets.token_hex(12)}"
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if status == 405:
        response["Allow"] = "POST"
    return response


def error_body(error: FrontError) -> tuple[int, dict[str, Any]]:
    """Anthropic's status and error object for ``error``; a provider that was unavailable is its 529 overloaded.

    ``code`` (the platform's) and ``param`` ride along in the error object; the SDKs ignore them.
    """
    status = 529 if error.code == "provider_unavailable" else error.status
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": error.message, "code": error.code}}
    if error.param:
        body["error"]["param"] = error.param
    return status, body


def _bad(message: str, param: str | None = None, code: str = "invalid_request") -> FrontError:
    return FrontError(400, code, message, param=param)


# --- the request --------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _TextIn(_In):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None  # accepted; the platform does its own caching
    citations: list[Any] | None = None


class _Base64Source(_In):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class _UrlSource(_In):
    type: Literal["url"]
    url: str


class _ImageIn(_In):
    type: Literal["image"]
    source: Annotated[_Base64Source | _UrlSource, Field(discriminator="type")]
    cache_control: dict[str, Any] | None = None


class _ToolUseIn(_In):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class _ToolResultIn(_In):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[_TextIn | _ImageIn, Field(discriminator="type")]] = ""
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


class _ThinkingIn(_In):
    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class _RedactedThinkingIn(_In):
    type: Literal["redacted_thinking"]
    data: str = Field(min_length=1)


_BlockIn = Annotated[
    _TextIn | _ImageIn | _ToolUseIn | _ToolResultIn | _ThinkingIn | _RedactedThinkingIn, Field(discriminator="type")
]


class _MessageIn(_In):
    role: Literal["user", "assistant"]
    content: str | list[_BlockIn]


class _ToolIn(_In):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    input_schema: dict[str, Any]
    cache_control: dict[str, Any] | None = None
    strict: bool | None = None
    eager_input_streaming: bool | None = None

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError("input_schema.type must be 'object'")
        return schema


class _ToolChoiceIn(_In):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None  # accepted; a hint the engine does not enforce


class _ThinkingConfigIn(_In):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class _OutputFormatIn(_In):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class _OutputConfigIn(_In):
    effort: Literal["low", "medium", "high", "max"] | None = None  # accepted; the model's own default applies
    format: _OutputFormatIn | None = None


class _MetadataIn(_In):
    user_id: str | None = None
    chat_id: int | str | None = None


class _CountTokensIn(_In):
    model: str = Field(min_length=1)
    messages: list[_MessageIn] = Field(min_length=1)
    system: str | list[_TextIn] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: _ToolChoiceIn | None = None
    thinking: _ThinkingConfigIn | None = None
    mcp_servers: list[str] | None = None


class _MessagesIn(_CountTokensIn):
    max_tokens: int = Field(ge=1)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: _MetadataIn | None = None
    output_config: _OutputConfigIn | None = None
    # Accepted and ignored: there is one tier here, and the platform manages its own context.
    service_tier: str | None = None
    context_management: dict[str, Any] | None = None
    # The platform's extras: a stored chat unless false.
    store: bool = True


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json_strict(request.body or b"null")
    except RequestDataTooBig:
        raise FrontError(413, "request_too_large", "The request body is larger than MAX_REQUEST_BYTES.") from None
    except (ValueError, UnicodeDecodeError):
        raise _bad("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", code="invalid_json")
    return body


def _parse[M: BaseModel](body: dict[str, Any], model: type[M]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # The deepest error is the most telling: a bad block fails both the string and the list branch.
        error = max(exc.errors(), key=lambda e: len(e["loc"]))
        where = _field_path(body, error["loc"])
        message = "Extra inputs are not permitted" if error["type"] == "extra_forbidden" else error["msg"]
        raise _bad(f"{where}: {message}" if where else message, where or None) from None


def _field_path(body: Any, loc: tuple[str | int, ...]) -> str:
    """The error's location as the request's field path: without the union members pydantic names in it
    (``list[...]``, ``str``, a block's tag), which are not in the request."""
    path: list[str] = []
    cursor = body
    for index, part in enumerate(loc):
        present = isinstance(cursor, dict) and part in cursor
        listed = isinstance(cursor, list) and isinstance(part, int) and 0 <= part < len(cursor)
        if present or listed:
            cursor = cursor[part]
        elif index == len(loc) - 1 and isinstance(part, str) and "[" not in part:
            cursor = None  # a field that is missing
        else:
            continue
        path.append(str(part))
    return ".".join(path)


def _conversation(messages: list[_MessageIn]) -> list[Message]:
    """Anthropic's turns as canonical messages: a user turn's tool results become a ``tool`` message first."""
    names: dict[str, str] = {}  # tool_use id -> tool name (Gemini and Ollama key results by name)
    conversation: list[Message] = []
    for index, message in enumerate(messages):
        blocks: list[Any] = (
            [_TextIn(type="text", text=message.content)] if isinstance(message.content, str) else message.content
        )
        if message.role == "assistant":
            content: list[ContentBlock] = []
            for position, block in enumerate(blocks):
                content.append(_assistant_block(block, f"messages.{index}.content.{position}"))
                if isinstance(block, _ToolUseIn):
                    names[block.id] = block.name
            if content:
                conversation.append(Message(role="assistant", content=content))
            continue
        results: list[ContentBlock] = []
        rest: list[ContentBlock] = []
        for position, block in enumerate(blocks):
            where = f"messages.{index}.content.{position}"
            if isinstance(block, _ToolResultIn):
                results.append(
                    ToolResultBlock(
                        tool_call_id=block.tool_use_id,
                        name=names.get(block.tool_use_id, ""),
                        content=_result_text(block, where),
                        is_error=block.is_error,
                    )
                )
            elif isinstance(block, _TextIn):
                rest.append(TextBlock(text=block.text))
            elif isinstance(block, _ImageIn):
                rest.append(_image(block, where))
            else:
                raise _bad(f"{where}: a user message cannot contain a {block.type!r} block.", where)
        if results:
            conversation.append(Message(role="tool", content=results))
        if rest:
            conversation.append(Message(role="user", content=rest))
    return conversation


def _assistant_block(block: Any, where: str) -> ContentBlock:
    if isinstance(block, _TextIn):
        return TextBlock(text=block.text)
    if isinstance(block, _ToolUseIn):
        return ToolCallBlock(id=block.id, name=block.name, arguments=block.input)
    if isinstance(block, _ThinkingIn):
        signed = bool(block.signature)
        return ThinkingBlock(
            text=block.thinking, signature=block.signature or None, origin=SIGNING_KIND if signed else None
        )
    if isinstance(block, _RedactedThinkingIn):
        return ThinkingBlock(text="", signature=block.data, redacted=True, origin=SIGNING_KIND)
    raise _bad(f"{where}: an assistant message cannot contain a {block.type!r} block.", where)


def _image(block: _ImageIn, where: str) -> ImageBlock:
    source = block.source
    try:
        if isinstance(source, _Base64Source):
            return ImageBlock(data=source.data, media_type=source.media_type)
        return ImageBlock(url=source.url)
    except ValidationError as exc:
        raise _bad(
            f"{where}.source: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", f"{where}.source"
        ) from None


def _result_text(block: _ToolResultIn, where: str) -> str:
    if isinstance(block.content, str):
        return block.content
    texts: list[str] = []
    for position, part in enumerate(block.content):
        if isinstance(part, _ImageIn):
            raise _bad(
                f"{where}.content.{position}: images in tool results are not supported; send text.",
                f"{where}.content.{position}",
                code="unsupported_content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _system(system: str | list[_TextIn] | None) -> str | None:
    if system is None:
        return None
    text = system if isinstance(system, str) else "\n\n".join(block.text for block in system)
    return text or None


def _tools(raw: list[dict[str, Any]] | None) -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for index, tool in enumerate(raw or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            raise _bad(
                f"tools.{index}: Anthropic's server tools ({kind!r}) are not available here; the platform runs "
                "MCP tools server-side instead (a model alias, or mcp_servers).",
                f"tools.{index}.type",
                code="unsupported_tool",
            )
        if not isinstance(tool, dict):
            raise _bad(f"tools.{index}: Input should be an object", f"tools.{index}")
        try:
            spec = _parse(tool, _ToolIn)
        except FrontError as error:
            raise _bad(f"tools.{index}.{error.message}", f"tools.{index}.{error.param or ''}".rstrip(".")) from None
        if any(existing.name == spec.name for existing in specs):
            raise _bad(f"tools: Tool names must be unique ({spec.name!r} repeats)", f"tools.{index}.name")
        specs.append(ToolSpec(name=spec.name, description=spec.description, input_schema=spec.input_schema))
    return specs


def _options(body: _MessagesIn) -> dict[str, Any]:
    """The generation options the request sets; an alias's defaults fill the rest."""
    if body.top_k is not None:
        raise _bad("top_k is not supported: no provider behind this API honours it.", "top_k", "unsupported_parameter")
    options: dict[str, Any] = {"max_tokens": body.max_tokens}
    if body.temperature is not None:
        options["temperature"] = body.temperature
    if body.top_p is not None:
        options["top_p"] = body.top_p
    if body.stop_sequences:
        if not all(sequence.strip() for sequence in body.stop_sequences):
            raise _bad("stop_sequences: each must have non-whitespace characters.", "stop_sequences")
        options["stop"] = list(body.stop_sequences)
    thinking = body.thinking
    if thinking is not None:
        options["thinking_budget"] = _thinking_budget(thinking, body.max_tokens)
    if body.tool_choice is not None:
        options["tool_choice"] = _tool_choice(body.tool_choice)
    if body.output_config is not None and body.output_config.format is not None:
        schema = body.output_config.format.schema_
        options["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return options


def _thinking_budget(thinking: _ThinkingConfigIn, max_tokens: int) -> int | None:
    if thinking.type == "disabled":
        return None
    if thinking.type == "adaptive":
        # The model picks its own effort on Anthropic's newest models; here, half of max_tokens.
        return max(MIN_THINKING_BUDGET, max_tokens // 2) if max_tokens > MIN_THINKING_BUDGET else None
    budget = thinking.budget_tokens
    if budget is None or budget < MIN_THINKING_BUDGET:
        raise _bad(
            f"thinking.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}",
            "thinking.budget_tokens",
        )
    if budget >= max_tokens:
        raise _bad("max_tokens must be greater than thinking.budget_tokens", "thinking.budget_tokens")
    return budget


def _tool_choice(choice: _ToolChoiceIn) -> dict[str, Any]:
    if choice.type == "tool":
        if not choice.name:
            raise _bad("tool_choice.name: Field required when type is 'tool'", "tool_choice.name")
        return {"mode": "tool", "name": choice.name}
    if choice.name is not None:
        raise _bad("tool_choice.name: only with type 'tool'", "tool_choice.name")
    return {"mode": {"auto": "auto", "any": "required", "none": "none"}[choice.type]}


def _chat_id(request: HttpRequest, body: _MessagesIn) -> int | None:
    raw = body.metadata.chat_id if body.metadata is not None else None
    if raw is None:
        raw = request.headers.get("X-Chat-Id")
    if raw is None or raw == "":
        return None
    try:
        chat_id = int(str(raw))
    except ValueError:
        chat_id = 0
    if chat_id < 1:
        raise _bad("metadata.chat_id (or X-Chat-Id) must be a chat's id, a number.", "metadata.chat_id")
    return chat_id


def parse_request(request: HttpRequest) -> tuple[FrontTurn, bool]:
    """The request as a FrontTurn, and whether it streams; FrontError 400 for anything amiss."""
    body = _parse(_json_body(request), _MessagesIn)
    chat_id = _chat_id(request, body)
    if not body.store and chat_id is not None:
        raise _bad("store: false cannot continue a stored chat.", "store")
    turn = FrontTurn(
        model=body.model,
        conversation=_conversation(body.messages),
        system=_system(body.system),
        client_tools=_tools(body.tools),
        options=_options(body),
        mcp_servers=body.mcp_servers,
        store=body.store,
        chat_id=chat_id,
    )
    return turn, body.stream


# --- the reply ----------------------------------------------------------------------------------------------


def _frame(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class ReplyBlocks:
    """The engine's events as Anthropic content blocks, and as the SSE frames that build them.

    Every round's thinking and text are blocks in the order they came (as Anthropic's own server tools
    leave text before and after them); the MCP calls run server-side are ``platform_tool_execution``
    events, not blocks; the model's calls of the client's tools are ``tool_use`` blocks at the end.
    """

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.executions: list[dict[str, Any]] = []
        self._open: str | None = None
        self._round = 0

    def feed(self, event: Event) -> list[str]:
        frames: list[str] = []
        if isinstance(event, ThinkingDelta) and event.signature:
            # The thinking block just streamed is signed: the client sends it back with the signature.
            if self._open == "thinking" and event.round == self._round:
                self.blocks[-1]["signature"] = event.signature
                frames.append(self._delta({"type": "signature_delta", "signature": event.signature}))
            return frames
        if isinstance(event, TextDelta | ThinkingDelta):
            if not event.text:
                return frames
            kind = "text" if isinstance(event, TextDelta) else "thinking"
            if self._open != kind or event.round != self._round:
                frames += self.close()
                frames += self._start({"type": "text", "text": ""} if kind == "text" else _thinking_block())
                self._round = event.round
            block = self.blocks[-1]
            block[kind] += event.text
            delta = {"type": f"{kind}_delta", kind: event.text}
            frames.append(self._delta(delta))
        elif isinstance(event, ToolCallStarted | ToolCallFinished):
            frames += self.close()
            execution = event.to_dict()
            status = "started" if isinstance(event, ToolCallStarted) else "finished"
            if isinstance(event, ToolCallFinished):
                self.executions.append(execution)
            frames.append(
                _frame("platform_tool_execution", {**execution, "type": "platform_tool_execution", "status": status})
            )
        elif isinstance(event, ClientToolCalls):
            frames += self.close()
            for call in event.calls:
                frames += self._start({"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}})
                # tool_use input is an object: arguments the model sent that are not one come back empty
                arguments = call["arguments"] if isinstance(call["arguments"], dict) else {}
                self.blocks[-1]["input"] = arguments
                frames.append(self._delta({"type": "input_json_delta", "partial_json": json.dumps(arguments)}))
                frames += self.close()
        return frames

    def close(self) -> list[str]:
        if self._open is None:
            return []
        self._open = None
        return [_frame("content_block_stop", {"type": "content_block_stop", "index": len(self.blocks) - 1})]

    def _start(self, block: dict[str, Any]) -> list[str]:
        self.blocks.append(block)
        self._open = block["type"]
        index = len(self.blocks) - 1
        return [
            _frame("content_block_start", {"type": "content_block_start", "index": index, "content_block": dict(block)})
        ]

    def _delta(self, delta: dict[str, Any]) -> str:
        return _frame(
            "content_block_delta", {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}
        )

    def sign(self, stored: list[Message]) -> None:
        """Give the thinking blocks the signatures the provider gave them (kept on the stored messages)."""
        signed = [b for m in stored for b in m.content if isinstance(b, ThinkingBlock) and not b.redacted]
        thinking = [block for block in self.blocks if block["type"] == "thinking"]
        if len(signed) != len(thinking):
            return  # split differently than streamed: better no signature than a wrong one
        for block, source in zip(thinking, signed, strict=True):
            block["signature"] = source.signature or ""


def _thinking_block() -> dict[str, Any]:
    return {"type": "thinking", "thinking": "", "signature": ""}


def _status(finish_reason: str) -> str:
    if finish_reason in ("awaiting_approval", "awaiting_input", "cancelled", "round_limit", "error"):
        return finish_reason
    return "completed"


def _platform(result: FrontResult, chat_id: int | None, executions: list[dict[str, Any]]) -> dict[str, Any]:
    platform: dict[str, Any] = {
        "chat_id": chat_id,
        "cost": result.cost,
        "status": _status(result.finish_reason),
        "finish_reason": result.finish_reason,
        "tool_executions": executions,
    }
    if result.pending:
        platform["approvals"] = [p for p in result.pending if p["type"] == "tool_approval_required"]
        platform["elicitations"] = [p for p in result.pending if p["type"] == "elicitation_required"]
    if result.error is not None:
        platform["error"] = {"code": result.error.code, "message": result.error.message}
    return platform


def _stop_reason(result: FrontResult) -> str:
    return STOP_REASONS.get(result.finish_reason, "end_turn")


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
    }


def _message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def _stored_assistant_messages(message_ids: list[int]) -> list[Message]:
    rows = MessageRow.objects.filter(pk__in=message_ids, role="assistant").order_by("position")
    return [Message(role="assistant", content=CONTENT_BLOCKS.validate_python(row.content)) for row in rows]


def _turn_error(result: FrontResult) -> FrontError | None:
    status = result.error_status
    if status is None or result.error is None:
        return None
    return FrontError(status, result.error.code, result.error.message)


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if request.method != "POST":
        return anthropic_error(FrontError(405, "method_not_allowed", f"{request.method} is not allowed here."))
    try:
        caller = await front_caller(request)
        turn, stream = parse_request(request)
        handle, _target = await front_turn_start(caller, turn)
    except FrontError as error:
        return anthropic_error(error)
    except REDIS_AWAY:  # what has no fallback without Redis (the busy-chat rule across workers)
        return anthropic_error(
            FrontError(503, "service_unavailable", "A backing service is unavailable; retry shortly.")
        )
    message_id = _message_id()
    if stream:
        return await _streamed(handle, message_id, turn)
    events, asked = await handle.result_or_approvals()
    result = result_of(events, asked, chat_id=handle.chat_id)
    failure = _turn_error(result)
    if failure is not None:
        response = anthropic_error(failure)
        # The turn ran (and stored what it brought, maybe ran tools): an SDK's automatic retry would repeat it.
        response["x-should-retry"] = "false"
        return response
    reply = ReplyBlocks()
    for event in events:
        reply.feed(event)
    if turn.store and any(block["type"] == "thinking" for block in reply.blocks):
        ids = [event.message_id for event in events if isinstance(event, MessageDone) and event.role == "assistant"]
        reply.sign(await run_db(_stored_assistant_messages, ids))
    chat_id = result.chat_id if turn.store else None
    response = JsonResponse(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": turn.model,
            "content": reply.blocks,
            "stop_reason": _stop_reason(result),
            "stop_sequence": None,
            "usage": _usage(result.input_tokens, result.output_tokens),
            "platform": _platform(result, chat_id, result.executions),
        }
    )
    if chat_id is not None:
        response["X-Chat-Id"] = str(chat_id)
    return response


async def _streamed(handle: TurnHandle, message_id: str, turn: FrontTurn) -> StreamingHttpResponse:
    queue = handle.subscribe()
    # The turn's first event says which chat it is, so the X-Chat-Id header can go out with the stream.
    first = await queue.get()
    chat_id = handle.chat_id if turn.store else None
    response = StreamingHttpResponse(
        _frames(handle, queue, first, message_id, turn.model, chat_id), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    if chat_id is not None:
        response["X-Chat-Id"] = str(chat_id)
    return response


async def _frames(
    handle: TurnHandle,
    queue: "asyncio.Queue[Event]",
    first: Event,
    message_id: str,
    model: str,
    chat_id: int | None,
) -> AsyncIterator[str]:
    """Anthropic's event sequence: message_start, each block's start/deltas/stop, message_delta, message_stop.

    ``ping`` keeps a quiet connection open; a turn that fails upstream ends with ``event: error``. A client
    that goes away stops this generator, not the turn: its task finishes and stores the reply.
    """
    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(0, 0),
    }
    yield _frame("message_start", {"type": "message_start", "message": start})
    yield _frame("ping", {"type": "ping"})
    reply = ReplyBlocks()
    seen: list[Event] = []
    event: Event | None = first
    while True:
        if event is None:
            try:
                event = await asyncio.wait_for(queue.get(), settings.CHAT_SSE_HEARTBEAT_SECONDS)
            except TimeoutError:
                yield _frame("ping", {"type": "ping"})
                continue
        seen.append(event)
        asked: list[ToolApprovalRequired | ElicitationRequired] = []
        if isinstance(event, ToolApprovalRequired | ElicitationRequired):
            # The turn waits for a person: the response ends here, the turn goes on once they decide.
            # A round announces all its approvals at once: those queued now are all it waits for.
            asked.append(event)
            while not queue.empty():
                later = queue.get_nowait()
                seen.append(later)
                if isinstance(later, ToolApprovalRequired | ElicitationRequired):
                    asked.append(later)
        elif not isinstance(event, TurnDone):
            for frame in reply.feed(event):
                yield frame
            event = None
            continue
        result = result_of(seen, asked, chat_id=chat_id)
        error = _turn_error(result)
        if error is not None:
            yield _frame("error", error_body(error)[1])
            return
        for frame in reply.close():
            yield frame
        platform = _platform(result, chat_id, reply.executions)
        yield _frame("platform_status", {"type": "platform_status", **platform})
        yield _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(result), "stop_sequence": None},
                "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
            },
        )
        yield _frame("message_stop", {"type": "message_stop"})
        return


# --- count_tokens -------------------------------------------------------------------------------------------


@csrf_exempt
async def count_tokens(request: HttpRequest) -> HttpResponse:
    """``{"input_tokens": N}``: the provider's own count where its adapter has one, else the documented estimate
    (``platform.estimated`` and the ``X-Token-Count`` header say which)."""
    if request.method != "POST":
        return anthropic_error(FrontError(405, "method_not_allowed", f"{request.method} is not allowed here."))
    try:
        caller = await front_caller(request)
        # A count may call the provider (with the platform's credentials): it counts on the caller's rate.
        await run_db(_count_request, caller)
        body = _parse(_json_body(request), _CountTokensIn)
        conversation = _conversation(body.messages)
        tools = _tools(body.tools)
        count = await _count(body.model, conversation, _system(body.system), tools)
    except FrontError as error:
        return anthropic_error(error)
    response = JsonResponse({"input_tokens": count.input_tokens, "platform": {"estimated": count.estimated}})
    response["X-Token-Count"] = "estimated" if count.estimated else "provider"
    return response


def _count_request(caller: Caller) -> None:
    try:
        rate_limit_check_user(user=caller.user)
    except ApplicationError as exc:
        raise FrontError.from_exception(exc) from exc


async def _count(model: str, conversation: list[Message], system: str | None, tools: list[ToolSpec]) -> TokenCount:
    try:
        target = await run_db(model_target, model)
        provider, _row = await run_db(provider_for_turn, name=target.provider, model=target.model)
        adapter = adapter_for(provider)
        return await adapter.count_tokens(messages=conversation, model=target.model, tools=tools, system=system)
    except ApplicationError as exc:
        raise FrontError.from_exception(exc) from exc
    except ProviderError as exc:
        status = TURN_ERROR_STATUS.get(exc.code, 502)
        raise FrontError(status, exc.code, str(exc)) from exc
