"""Anthropic (Claude) adapter: canonical conversation <-> the Messages API, over the official async SDK.

Anthropic-specific rules live here: tool results travel as a user turn of
``tool_result`` blocks, thinking blocks are replayed with their signatures
(only when they came from Anthropic), and ``input_tokens`` on the wire excludes
cached tokens, so usage is normalised before it leaves this module.
"""

import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anthropic
import httpx2
import orjson

from ..base import (
    ChatRequest,
    MessageBuilder,
    PriceSource,
    ProviderAdapter,
    ProviderConfig,
    TokenCount,
    parse_arguments,
    retry_after_seconds,
)
from ..errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..schema import SchemaDialect, tool_schema_for
from ..sse import drain, sse_events
from ..types import (
    Capabilities,
    Completion,
    FinishEvent,
    GenerationOptions,
    ImageBlock,
    Message,
    ModelInfo,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallBlock,
    ToolCallEvent,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    Usage,
    UsageEvent,
)

KIND = "anthropic"
# The wire requires max_tokens; this is what a request gets when the caller sets none.
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end",
    "stop_sequence": "end",
    # A paused server-tool turn; we run no server tools, so to the engine it is simply the end of this reply.
    "pause_turn": "end",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refused",
}

# An error event inside a 200 stream carries only its type; give it the status the same error has as a reply.
STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_INVALID_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def _wire_id(tool_call_id: str) -> str:
    # Other providers' ids may hold characters this wire rejects; the same id maps the same way in call and result.
    return _INVALID_ID_CHARS.sub("_", tool_call_id) or "toolu_empty"


def _wire_name(name: str) -> str:
    return (_INVALID_ID_CHARS.sub("_", name) or "tool")[:64]


def _stop_reason(raw: str | None, *, called_tools: bool) -> StopReason:
    if called_tools:
        return "tool_calls"
    return STOP_REASONS.get(raw or "", "end")


def _usage(wire: dict[str, Any]) -> Usage:
    cache_read = wire.get("cache_read_input_tokens") or 0
    cache_write = wire.get("cache_creation_input_tokens") or 0
    details = wire.get("output_tokens_details") or {}
    return Usage(
        input_tokens=(wire.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=wire.get("output_tokens") or 0,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )


def _present(wire: dict[str, Any] | None) -> dict[str, Any]:
    # Counts a message_delta leaves out (or sends as null) keep what message_start said.
    return {key: value for key, value in (wire or {}).items() if value is not None}


async def _stream_events(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a Messages stream as dicts, read the way the SDK's stream reads them.

    Pings and unnamed events are skipped, and an ``error`` event raises the
    SDK's APIStatusError (status 200), so map_error treats it like the SDK's own.
    """
    async for name, data in sse_events(response.aiter_bytes()):
        if name is None or name == "ping":
            continue
        if name == "error":
            body: object
            try:
                body = orjson.loads(data)
                message = f"{body}"
            except orjson.JSONDecodeError:
                body = data.decode(errors="replace")
                message = body or f"Error code: {response.status_code}"
            raise anthropic.APIStatusError(message, response=response, body=body)
        if data:
            event = orjson.loads(data)
            if isinstance(event, dict):
                yield event


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            # The wire rejects empty text blocks; another provider's opaque data is simply not sent.
            if block.text.strip():
                blocks.append({"type": "text", "text": block.text})
        elif isinstance(block, ThinkingBlock):
            # Only our own signed thinking can be replayed: the API verifies signatures, and another
            # provider's reasoning has no place in Claude's thinking slot.
            if block.origin != KIND or not block.signature:
                continue
            if block.redacted:
                blocks.append({"type": "redacted_thinking", "data": block.signature})
            else:
                blocks.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
        elif isinstance(block, ToolCallBlock):
            blocks.append(
                {"type": "tool_use", "id": _wire_id(block.id), "name": _wire_name(block.name), "input": block.arguments}
            )
    return blocks


def _result_block(block: ToolResultBlock) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": "tool_result", "tool_use_id": _wire_id(block.tool_call_id)}
    if block.content:
        wire["content"] = block.content
    if block.is_error:
        wire["is_error"] = True
    return wire


def _image_block(block: ImageBlock) -> dict[str, Any]:
    if block.url:
        return {"type": "image", "source": {"type": "url", "url": block.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": block.media_type, "data": block.data}}


def _user_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            blocks.append(_result_block(block))
        elif isinstance(block, TextBlock) and block.text.strip():
            blocks.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            blocks.append(_image_block(block))
    return blocks


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "none": "none", "required": "any"}[choice.mode]}


def wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical history as Messages API turns: tool messages become user turns, same-role neighbours merge."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message) if role == "assistant" else _user_blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            # The wire demands strict alternation: tool results followed by a user's text are one user turn.
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _continues_unsigned_tool_turn(turns: list[dict[str, Any]]) -> bool:
    """Whether the request answers tool calls made by an assistant turn that did not open with thinking.

    With thinking on, the API rejects that: the turn being continued must start
    with its signed thinking. It happens when a tool loop begun on another
    provider (or with thinking off) continues here.
    """
    if len(turns) < 2 or turns[-1]["role"] != "user" or turns[-1]["content"][0]["type"] != "tool_result":
        return False
    content = turns[-2]["content"]
    return content[0]["type"] not in ("thinking", "redacted_thinking")


class AnthropicAdapter(ProviderAdapter):
    kind = KIND
    label = "Anthropic"
    price_source = PriceSource(genai_prices="anthropic")
    schema_dialect: ClassVar[SchemaDialect] = "json_schema"
    capabilities = Capabilities(tools=True, streaming=True, thinking=True, vision=True, image_urls=True)
    requires_api_key = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # An explicit (possibly empty) key stops the SDK from reading ANTHROPIC_API_KEY or on-disk profiles:
        # the provider row decides which key is used. Retries are the base class's job, so the SDK's are off.
        self.client = anthropic.AsyncAnthropic(
            api_key=config.api_key or "",
            base_url=config.base_url or None,
            timeout=config.timeout,
            max_retries=0,
        )

    # --- canonical -> wire -------------------------------------------------------------

    @classmethod
    def unsupported_options(cls, options: GenerationOptions) -> list[str]:
        unsupported = []
        # The current API (SDK 2.x) has no sampling parameters: only their default value (1) is honoured.
        if options.temperature not in (None, 1):
            unsupported.append("temperature")
        if options.top_p not in (None, 1):
            unsupported.append("top_p")
        if options.seed is not None:
            unsupported.append("seed")
        # Structured outputs need a schema; "any JSON object" is not something the API can enforce.
        if options.response_format_type == "json_object":
            unsupported.append("response_format")
        # With extended thinking the API accepts only tool_choice auto or none.
        if (
            options.thinking_budget is not None
            and options.tool_choice
            and options.tool_choice.mode in ("required", "tool")
        ):
            unsupported.append("tool_choice")
        return unsupported

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        options = request.options
        messages = wire_messages(request.messages)
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.system:
            params["system"] = request.system
        if request.tools:
            params["tools"] = self._wire_tools(request.tools)
            if options.tool_choice is not None:
                params["tool_choice"] = _tool_choice(options.tool_choice)
        if options.stop:
            params["stop_sequences"] = list(options.stop)
        if options.response_schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": options.response_schema}}
        max_tokens = options.max_tokens
        thinking = options.thinking_budget is not None and not _continues_unsigned_tool_turn(messages)
        if thinking:
            budget = max(options.thinking_budget or 0, MIN_THINKING_BUDGET)
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            # The budget is part of max_tokens, so an unset max leaves room for an answer after the thinking.
            max_tokens = max_tokens or budget + DEFAULT_MAX_TOKENS
        # temperature, top_p and seed are not sent: this API version (SDK 2.x) has no sampling parameters.
        params["max_tokens"] = max_tokens or DEFAULT_MAX_TOKENS
        return params

    def _wire_tools(self, tools: list[ToolSpec]) -> list[dict[str, Any]]:
        return [
            {
                "name": spec.name,
                **({"description": spec.description} if spec.description else {}),
                "input_schema": tool_schema_for(self.schema_dialect, spec.input_schema),
            }
            for spec in tools
        ]

    # --- the calls ---------------------------------------------------------------------

    async def count_tokens(
        self,
        *,
        messages: list[Message],
        model: str,
        tools: list[ToolSpec] | None = None,
        system: str | None = None,
    ) -> TokenCount:
        """Anthropic's own count (``messages.count_tokens``) of the prompt as a request here would send it."""
        self._ensure_configured()
        params: dict[str, Any] = {"model": model, "messages": wire_messages(messages)}
        if system:
            params["system"] = system
        if tools:
            params["tools"] = self._wire_tools(tools)
        counted = await self._with_retries(lambda: self.client.messages.count_tokens(**params))
        return TokenCount(input_tokens=counted.input_tokens, estimated=False)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        builder = MessageBuilder()
        usage_wire: dict[str, Any] = {}
        model = request.model
        raw_reason: str | None = None
        called_tools = False
        # Per content-block index: the tool_use being streamed (id, name, JSON pieces).
        tool_uses: dict[int, tuple[str, str, list[str]]] = {}
        finished = False

        # The SDK makes the request (and raises its own errors for a failed status), but the events are read
        # as plain dicts: building its pydantic model for each one cost a third of the stream's CPU.
        async with self.client.messages.with_streaming_response.create(
            **self._params(request), stream=True
        ) as response:
            async for event in _stream_events(response.http_response):
                kind = event.get("type")
                if kind == "message_start":
                    message = event["message"]
                    model = message.get("model") or model
                    usage_wire.update(_present(message.get("usage")))
                elif kind == "content_block_start":
                    block = event["content_block"]
                    block_type = block.get("type")
                    if block_type == "text" and block.get("text"):
                        builder.add_text(block["text"])
                        yield TextDelta(text=block["text"])
                    elif block_type == "thinking":
                        builder.add_thinking(block["thinking"], signature=block.get("signature") or None, origin=KIND)
                        if block["thinking"]:
                            yield ThinkingDelta(text=block["thinking"])
                    elif block_type == "redacted_thinking":
                        builder.add_thinking("", signature=block["data"], redacted=True, origin=KIND)
                    elif block_type == "tool_use":
                        tool_uses[event["index"]] = (block["id"], block["name"], [])
                elif kind == "content_block_delta":
                    delta = event["delta"]
                    delta_type = delta.get("type")
                    if delta_type == "text_delta":
                        builder.add_text(delta["text"])
                        yield TextDelta(text=delta["text"])
                    elif delta_type == "thinking_delta":
                        builder.add_thinking(delta["thinking"], origin=KIND)
                        yield ThinkingDelta(text=delta["thinking"])
                    elif delta_type == "signature_delta":
                        builder.add_thinking("", signature=delta["signature"], origin=KIND)
                        yield ThinkingDelta(text="", signature=delta["signature"])
                    elif delta_type == "input_json_delta" and event["index"] in tool_uses:
                        tool_uses[event["index"]][2].append(delta["partial_json"])
                elif kind == "content_block_stop":
                    if event["index"] in tool_uses:
                        call_id, name, parts = tool_uses.pop(event["index"])
                        arguments, invalid = parse_arguments("".join(parts))
                        call = ToolCallBlock(id=call_id, name=name, arguments=arguments, invalid_arguments=invalid)
                        builder.add_tool_call(call)
                        called_tools = True
                        yield ToolCallEvent(call=call)
                    else:
                        # Two thinking blocks in a row are two signed blocks, not one.
                        builder.end_thinking()
                elif kind == "message_delta":
                    raw_reason = (event.get("delta") or {}).get("stop_reason") or raw_reason
                    # message_delta counts are cumulative: they replace what message_start said.
                    usage_wire.update(_present(event.get("usage")))
                elif kind == "message_stop":
                    finished = True
                    await drain(response.http_response)  # so the connection can serve the next request
                    break
        if not finished:
            raise ProviderUnavailable("The stream ended before message_stop.", provider=self.config.name)
        usage = _usage(usage_wire)
        yield UsageEvent(usage=usage)
        yield FinishEvent(
            reason=_stop_reason(raw_reason, called_tools=called_tools),
            raw_reason=raw_reason,
            message=builder.message(),
            usage=usage,
            model=model,
        )

    async def _complete(self, request: ChatRequest) -> Completion:
        reply = await self.client.messages.create(**self._params(request))
        builder = MessageBuilder()
        for block in reply.content:
            if block.type == "text":
                builder.add_text(block.text)
            elif block.type == "thinking":
                builder.add_thinking(block.thinking, signature=block.signature, origin=KIND)
                builder.end_thinking()
            elif block.type == "redacted_thinking":
                builder.add_thinking("", signature=block.data, redacted=True, origin=KIND)
                builder.end_thinking()
            elif block.type == "tool_use":
                arguments, invalid = parse_arguments(block.input)
                builder.add_tool_call(
                    ToolCallBlock(id=block.id, name=block.name, arguments=arguments, invalid_arguments=invalid)
                )
        message = builder.message()
        return Completion(
            message=message,
            usage=_usage(reply.usage.model_dump(exclude_none=True)),
            stop_reason=_stop_reason(reply.stop_reason, called_tools=bool(message.tool_calls)),
            raw_reason=reply.stop_reason,
            model=reply.model or request.model,
        )

    async def _list_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id=info.id, display_name=info.display_name or info.id, context_window=info.max_input_tokens)
            async for info in self.client.models.list()
        ]

    # --- errors ------------------------------------------------------------------------

    def map_error(self, exc: Exception) -> ProviderError:
        provider = self.config.name
        # The SDK wraps transport errors on the request, but ones raised while reading a stream arrive bare.
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return ProviderTimeout(f"Request timed out: {exc}", provider=provider)
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            return ProviderUnavailable(f"Could not reach the server: {exc}", provider=provider)
        if isinstance(exc, anthropic.APIStatusError):
            return self._map_status_error(exc)
        return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider)

    def _map_status_error(self, exc: anthropic.APIStatusError) -> ProviderError:
        provider = self.config.name
        status = exc.status_code
        if status < 400:
            status = STATUS_BY_ERROR_TYPE.get(exc.type or "", 500)
        message = exc.api_message or exc.message
        if status in (401, 403):
            return ProviderAuthenticationError(message, provider=provider, status=status)
        if status == 429:
            return ProviderRateLimited(
                message, provider=provider, status=status, retry_after=retry_after_seconds(exc.response.headers)
            )
        if status == 408:
            return ProviderTimeout(message, provider=provider, status=status)
        if status >= 500:
            return ProviderUnavailable(message, provider=provider, status=status)
        return ProviderBadRequest(message, provider=provider, status=status)
