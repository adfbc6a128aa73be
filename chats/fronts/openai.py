"""The OpenAI-compatible front: ``POST /v1/chat/completions`` in OpenAI's Chat Completions shape.

The request becomes a FrontTurn (canonical messages, client tools, options), the engine runs it, and its
events come back as a ``chat.completion`` object or ``chat.completion.chunk`` SSE frames. Every refusal is
OpenAI's error shape, so the openai SDKs raise their own exception classes.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError

from platform_site.exceptions import REDIS_AWAY
from providers.types import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ToolCallBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
)

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
from ..services.turns import TurnHandle
from .common import (
    TURN_ERROR_STATUS,
    FrontError,
    FrontResult,
    FrontTurn,
    front_caller,
    front_result,
    front_turn_start,
    json_strict,
)

# OpenAI's error ``type`` by status (the SDK picks its exception class by status alone).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# The engine's finish reasons in OpenAI's terms.
FINISH_REASONS = {"end": "stop", "tool_calls": "tool_calls", "length": "length", "refused": "content_filter"}

# Parameters OpenAI has that no provider here can honour: asking for them is a 400 naming the parameter.
# The value is whether the parameter's "off" value is accepted (``n: 1``, ``logprobs: false`` ...).
_UNSUPPORTED: dict[str, Any] = {
    "n": lambda v: v is None or v == 1,
    "logprobs": lambda v: v in (None, False),
    "top_logprobs": lambda v: v in (None, 0),
    "logit_bias": lambda v: not v,
    "audio": lambda v: v is None,
    "modalities": lambda v: v in (None, ["text"]),
    "prediction": lambda v: v is None,
    "frequency_penalty": lambda v: v in (None, 0),
    "presence_penalty": lambda v: v in (None, 0),
    "web_search_options": lambda v: v is None,
    "functions": lambda v: v is None,
    "function_call": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
}


def openai_error(error: FrontError) -> JsonResponse:
    body = {
        "error": {
            "message": error.message,
            "type": ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error"),
            "param": error.param,
            "code": error.code,
        }
    }
    response = JsonResponse(body, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def _bad(message: str, param: str | None, code: str = "invalid_value") -> FrontError:
    return FrontError(400, code, message, param=param)


# --- the request ------------------------------------------------------------------------------------------


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json_strict(request.body or b"")
    except RequestDataTooBig:
        raise FrontError(413, "request_too_large", "The request body is too large.") from None
    except (ValueError, UnicodeDecodeError):
        raise _bad("The body is not valid JSON.", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("The body must be a JSON object.", None, "invalid_json")
    return body


def _type_error(param: str, expected: str) -> FrontError:
    return _bad(f"{param} must be {expected}.", param, "invalid_type")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(name, "a number")
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low} and {high}.", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, *, minimum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer")
    if minimum is not None and value < minimum:
        raise _bad(f"{name} must be at least {minimum}.", name)
    return value


def _text_of(
    content: Any, param: str, *, allow_images: bool = False, allow_refusal: bool = False
) -> list[ContentBlock]:
    """A message's ``content`` (a string, or a list of parts) as canonical blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextBlock(text=content)] if content else []
    if not isinstance(content, list):
        raise _type_error(param, "a string or a list of content parts")
    blocks: list[ContentBlock] = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _type_error(where, "an object")
        kind = part.get("type")
        if kind == "text" or (kind == "refusal" and allow_refusal):
            text = part.get("text" if kind == "text" else "refusal")
            if not isinstance(text, str):
                raise _type_error(f"{where}.{kind}", "a string")
            blocks.append(TextBlock(text=text))
        elif kind == "image_url" and allow_images:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _type_error(f"{where}.image_url.url", "a string")
            try:
                blocks.append(ImageBlock(url=url))
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise _bad(message, f"{where}.image_url.url", "invalid_image") from None
        else:
            raise FrontError(
                400,
                "unsupported_content",
                f"Content part type {kind!r} is not supported here"
                + (" (text and image_url are)." if allow_images else " (text is)."),
                param=f"{where}.type",
            )
    return blocks


def _tool_calls(calls: Any, param: str) -> list[ToolCallBlock]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise _type_error(param, "a list")
    blocks = []
    for index, call in enumerate(calls):
        where = f"{param}[{index}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise _type_error(where, "an object with a function")
        if call.get("type", "function") != "function":
            raise FrontError(400, "unsupported_parameter", "Only function tool calls are supported.", param=where)
        call_id, function = call.get("id"), call["function"]
        name, arguments = function.get("name"), function.get("arguments", "{}")
        if not isinstance(call_id, str) or not call_id:
            raise _type_error(f"{where}.id", "a non-empty string")
        if not isinstance(name, str) or not name:
            raise _type_error(f"{where}.function.name", "a non-empty string")
        if not isinstance(arguments, str):
            raise _type_error(f"{where}.function.arguments", "a JSON string")
        try:
            parsed = json_strict(arguments or "{}")
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            blocks.append(ToolCallBlock(id=call_id, name=name, arguments=parsed))
        else:  # replayed as the model sent it; the engine refused to run it then
            blocks.append(ToolCallBlock(id=call_id, name=name, invalid_arguments=arguments))
    return blocks


def _messages(raw: Any) -> tuple[list[Message], str | None]:
    """The request's messages as the canonical conversation, and the system text (system and developer)."""
    if not isinstance(raw, list):
        raise _type_error("messages", "a list")
    if not raw:
        raise _bad("messages must not be empty.", "messages", "empty_messages")
    system: list[str] = []
    conversation: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> the tool's name, for the results
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _type_error(where, "an object")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = "".join(b.text for b in _text_of(content, f"{where}.content") if isinstance(b, TextBlock))
            if text:
                system.append(text)
        elif role == "user":
            blocks = _text_of(content, f"{where}.content", allow_images=True)
            if not blocks:
                raise _bad("A user message needs content.", f"{where}.content")
            conversation.append(Message(role="user", content=blocks))
        elif role == "assistant":
            if message.get("function_call") is not None:
                raise FrontError(400, "unsupported_parameter", "Use tool_calls, not function_call.", param=where)
            calls = _tool_calls(message.get("tool_calls"), f"{where}.tool_calls")
            names.update({call.id: call.name for call in calls})
            text_blocks = _text_of(content, f"{where}.content", allow_refusal=True)
            conversation.append(Message(role="assistant", content=[*text_blocks, *calls]))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _type_error(f"{where}.tool_call_id", "a non-empty string")
            text = "".join(b.text for b in _text_of(content, f"{where}.content") if isinstance(b, TextBlock))
            result = ToolResultBlock(tool_call_id=call_id, name=names.get(call_id, ""), content=text)
            if conversation and conversation[-1].role == "tool":  # a round's results travel together
                conversation[-1] = Message(role="tool", content=[*conversation[-1].content, result])
            else:
                conversation.append(Message(role="tool", content=[result]))
        elif role == "function":
            raise FrontError(400, "unsupported_parameter", "Use tool messages, not function.", param=f"{where}.role")
        else:
            raise _bad("role must be one of system, developer, user, assistant, tool.", f"{where}.role", "invalid_role")
    if not conversation:
        raise _bad("messages needs a user message (or tool results), not only system text.", "messages")
    return conversation, "\n\n".join(system) or None


def _tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error("tools", "a list")
    specs: list[ToolSpec] = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _type_error(where, "an object")
        if tool.get("type") != "function":
            raise FrontError(400, "unsupported_parameter", "Only function tools are supported.", param=f"{where}.type")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _type_error(f"{where}.function", "an object")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise _type_error(f"{where}.function.parameters", "a JSON Schema object")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise _type_error(f"{where}.function.description", "a string")
        try:
            spec = ToolSpec(name=str(function.get("name") or ""), description=description, input_schema=parameters)
        except ValidationError:
            raise _bad(
                "A tool name is 1 to 64 letters, digits, '_' or '-'.", f"{where}.function.name", "invalid_tool_name"
            ) from None
        if any(other.name == spec.name for other in specs):
            raise _bad(f"Two tools are named {spec.name!r}.", f"{where}.function.name", "duplicate_tool_name")
        specs.append(spec)
    return specs


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        # One of the request's tools, or a server-side one (``<server>__<tool>``): the model is offered both.
        name = raw["function"].get("name")
        if not isinstance(name, str) or not name:
            raise _type_error("tool_choice.function.name", "a non-empty string")
        return ToolChoice(mode="tool", name=name)
    raise _bad('tool_choice must be "auto", "none", "required" or {"type": "function", ...}.', "tool_choice")


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The generation options the request set (the alias's defaults fill the rest)."""
    options: dict[str, Any] = {}
    if (temperature := _number(body, "temperature", 0, 2)) is not None:
        options["temperature"] = temperature
    if (top_p := _number(body, "top_p", 0, 1)) is not None:
        options["top_p"] = top_p
    max_tokens = _integer(body, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", minimum=1)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if (seed := _integer(body, "seed")) is not None:
        options["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise _type_error("stop", "a string or a list of strings")
        if len(stops) > 4:
            raise _bad("stop takes at most 4 sequences.", "stop")
        if stops:
            options["stop"] = stops
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or response_format.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            raise _bad('response_format.type must be "text", "json_object" or "json_schema".', "response_format")
        if response_format["type"] == "json_schema" and not isinstance(response_format.get("json_schema"), dict):
            raise _type_error("response_format.json_schema", "an object")
        if response_format["type"] != "text":
            options["response_format"] = response_format
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        options["tool_choice"] = choice
    return options


def _chat_id(request: HttpRequest, body: dict[str, Any]) -> int | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _type_error("metadata", "an object")
    raw = (metadata or {}).get("chat_id") or request.headers.get("X-Chat-Id")
    if raw is None or raw == "":
        return None
    try:
        chat_id = int(str(raw))
    except ValueError:
        raise _bad("metadata.chat_id (or X-Chat-Id) must be a chat's id, a number.", "metadata.chat_id") from None
    if chat_id < 1:
        raise _bad("metadata.chat_id (or X-Chat-Id) must be a chat's id, a number.", "metadata.chat_id")
    return chat_id


def _mcp_servers(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise _type_error("mcp_servers", "a list of MCP server names")
    return raw


def parse_request(request: HttpRequest) -> tuple[FrontTurn, bool, bool]:
    """The request as a FrontTurn, whether to stream, and whether to add the usage chunk to the stream."""
    body = _json_body(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required: an alias or provider/model from /v1/models.", "model", "missing_model")
    for name, accepted in _UNSUPPORTED.items():
        if not accepted(body.get(name)):
            raise FrontError(
                400,
                "unsupported_parameter",
                f"{name} is not supported by this API (see the README's /v1 section).",
                param=name,
            )
    conversation, system = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _type_error("stream", "a boolean")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise _type_error("stream_options", "an object")
    store = body.get("store")
    if store is not None and not isinstance(store, bool):
        raise _type_error("store", "a boolean")
    chat_id = _chat_id(request, body)
    if store is False and chat_id is not None:
        raise _bad("store: false cannot continue a stored chat.", "store")
    turn = FrontTurn(
        model=model,
        conversation=conversation,
        system=system,
        client_tools=tools,
        options=_options(body),
        mcp_servers=_mcp_servers(body.get("mcp_servers")),
        store=store is not False,
        chat_id=chat_id,
    )
    return turn, stream, bool(stream_options.get("include_usage"))


# --- the view ---------------------------------------------------------------------------------------------


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    if request.method != "POST":
        response = openai_error(FrontError(405, "method_not_allowed", f"{request.method} is not allowed here."))
        response["Allow"] = "POST"
        return response
    try:
        caller = await front_caller(request)
        turn, stream, include_usage = parse_request(request)
        handle, _target = await front_turn_start(caller, turn)
    except FrontError as error:
        return openai_error(error)
    except REDIS_AWAY:  # what has no fallback without Redis (the busy-chat rule across workers): a 503
        return openai_error(FrontError(503, "service_unavailable", "A backing service is unavailable; retry shortly."))
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if stream:
        return await _streamed(handle, completion_id, turn, include_usage)
    result = await front_result(handle)
    chat_id = result.chat_id if turn.store else None
    status = result.error_status
    if status is not None and result.error is not None:
        response = openai_error(FrontError(status, result.error.code, result.error.message))
        # The turn ran (and stored what it brought, maybe ran tools): an SDK's automatic retry would repeat it.
        response["x-should-retry"] = "false"
    else:
        response = JsonResponse(_completion(result, completion_id, turn.model, chat_id))
    if chat_id is not None:
        response["X-Chat-Id"] = str(chat_id)
    return response


def _status(finish_reason: str) -> str:
    if finish_reason in ("awaiting_approval", "awaiting_input", "cancelled", "round_limit", "error"):
        return finish_reason
    return "completed"


def _arguments(arguments: dict[str, Any] | str) -> str:
    """A client call's arguments as OpenAI sends them: JSON text (the model's own text when it was not JSON)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": _arguments(call["arguments"])},
    }


def _pending(result_pending: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "approvals": [p for p in result_pending if p["type"] == "tool_approval_required"],
        "elicitations": [p for p in result_pending if p["type"] == "elicitation_required"],
    }


def _completion(result: FrontResult, completion_id: str, model: str, chat_id: int | None) -> dict[str, Any]:
    tool_calls = [_tool_call(call) for call in result.client_calls]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.text or (None if tool_calls else ""),
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if result.thinking:  # as DeepSeek, vLLM and OpenRouter name it; the SDK keeps it as an extra field
        message["reasoning_content"] = result.thinking
    platform: dict[str, Any] = {
        "chat_id": chat_id,
        "cost": result.cost,
        "tool_executions": result.executions,
        "status": _status(result.finish_reason),
    }
    if result.pending:
        platform.update(_pending(result.pending))
    if result.error is not None:
        platform["error"] = {"code": result.error.code, "message": result.error.message}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": result.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(result.finish_reason, "stop"),
            }
        ],
        "usage": _usage(result.input_tokens, result.output_tokens),
        "platform": platform,
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# --- streaming ----------------------------------------------------------------------------------------------


async def _streamed(handle: TurnHandle, completion_id: str, turn: FrontTurn, include_usage: bool) -> HttpResponseBase:
    queue = handle.subscribe()
    # The turn's first event says which chat it is (the engine sends nothing of a new chat's turn before it),
    # so the X-Chat-Id header can go out with the stream.
    first = await queue.get()
    chat_id = handle.chat_id if turn.store else None
    frames = _frames(queue, first, completion_id, turn.model, chat_id, include_usage)
    response = StreamingHttpResponse(frames, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    if chat_id is not None:
        response["X-Chat-Id"] = str(chat_id)
    return response


def _data(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, separators=(',', ':'))}\n\n"


async def _frames(
    queue: "asyncio.Queue[Event]",
    first: Event,
    completion_id: str,
    model: str,
    chat_id: int | None,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The turn's events as ``chat.completion.chunk`` frames, ``data: [DONE]`` last.

    A client that goes away stops this generator, not the turn: its task finishes and stores the reply.
    """
    created = int(time.time())

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }

    yield _data(chunk({"role": "assistant", "content": ""}))
    text_round = 0  # the last round that sent text: a later round's text starts on a new paragraph
    error: ErrorEvent | None = None
    executions: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    calls = 0
    used_in, used_out, used_cost = 0, 0, Decimal(0)  # the rounds' usage so far
    event: Event | None = first
    while True:
        if event is None:
            try:
                event = await asyncio.wait_for(queue.get(), settings.CHAT_SSE_HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
        if isinstance(event, TextDelta) and event.text:
            text = event.text
            if text_round and event.round != text_round:
                text = "\n\n" + text
            text_round = event.round
            yield _data(chunk({"content": text}))
        elif isinstance(event, ThinkingDelta) and event.text:
            yield _data(chunk({"reasoning_content": event.text}))
        elif isinstance(event, ToolCallStarted | ToolCallFinished):
            if isinstance(event, ToolCallFinished):
                executions.append(event.to_dict())
            yield _data(chunk(None, platform=event.to_dict()))
        elif isinstance(event, ClientToolCalls):
            deltas = [{"index": calls + i, **_tool_call(call)} for i, call in enumerate(event.calls)]
            calls += len(deltas)
            yield _data(chunk({"tool_calls": deltas}))
        elif isinstance(event, ErrorEvent):
            error = event
        elif isinstance(event, UsageReport):
            used_in, used_out, used_cost = (
                used_in + event.input_tokens,
                used_out + event.output_tokens,
                used_cost + event.cost,
            )
        elif isinstance(event, ToolApprovalRequired | ElicitationRequired):
            # The turn waits for a person: the response ends here, the turn goes on once they decide.
            # A round announces all its approvals at once: those queued now are all it waits for.
            asked = [event]
            while not queue.empty():
                later = queue.get_nowait()
                if isinstance(later, ToolApprovalRequired | ElicitationRequired):
                    asked.append(later)
            approving = any(isinstance(a, ToolApprovalRequired) for a in asked)
            waiting = "awaiting_approval" if approving else "awaiting_input"
            pending = [a.to_dict() for a in asked]
            platform = {
                "chat_id": chat_id,
                "cost": f"{used_cost:.8f}",
                "status": waiting,
                "tool_executions": executions,
                **_pending(pending),
            }
            yield _data(chunk({}, "stop", platform=platform))
            if include_usage:
                yield _data(chunk(None, usage=_usage(used_in, used_out)))
            yield _data("[DONE]")
            return
        elif isinstance(event, TurnDone):
            failed = not event.success and event.finish_reason == "error" and error is not None
            platform = {
                "chat_id": chat_id,
                "cost": f"{event.cost:.8f}",
                "status": _status(event.finish_reason),
                "tool_executions": executions,
            }
            if error is not None:
                platform["error"] = {"code": error.code, "message": error.message}
            finish = "tool_calls" if calls else FINISH_REASONS.get(event.finish_reason, "stop")
            yield _data(chunk({}, finish, platform=platform))
            if include_usage:
                yield _data(chunk(None, usage=_usage(event.input_tokens, event.output_tokens)))
            if failed and error is not None:
                status = TURN_ERROR_STATUS.get(error.code, 502)
                kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
                yield _data({"error": {"message": error.message, "type": kind, "param": None, "code": error.code}})
            yield _data("[DONE]")
            return
        event = None
