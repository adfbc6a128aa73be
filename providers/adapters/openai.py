"""The OpenAI Chat Completions adapter, over the official async SDK.

It also serves every OpenAI-compatible server (vLLM, LM Studio, OpenRouter,
Ollama's /v1), so it sends only the fields those servers understand.
"""

import json
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

import anyio
import httpx2
import openai
import orjson
from openai._constants import RAW_RESPONSE_HEADER
from openai._response import AsyncResponseContextManager
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam

from ..base import (
    ChatRequest,
    MessageBuilder,
    PriceSource,
    ProviderAdapter,
    ProviderConfig,
    image_placeholder,
    new_tool_call_id,
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
    ImageBlock,
    Message,
    ModelInfo,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingDelta,
    ToolCallBlock,
    ToolCallEvent,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    Usage,
    UsageEvent,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"

STOP_REASONS: dict[str, StopReason] = {
    "stop": "end",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "content_filter": "refused",
}

# Compatible servers put model reasoning in a non-standard delta field (vLLM and DeepSeek
# `reasoning_content`, OpenRouter and Ollama `reasoning`); OpenAI itself never sends it.
REASONING_FIELDS = ("reasoning_content", "reasoning")

# Compatible servers that report a context window name it differently (Groq, OpenRouter, vLLM, LM Studio).
CONTEXT_WINDOW_FIELDS = ("context_window", "context_length", "max_model_len", "max_context_length")


class OpenAIAdapter(ProviderAdapter):
    kind = "openai"
    label = "OpenAI"
    price_source = PriceSource(genai_prices="openai")
    schema_dialect: ClassVar[SchemaDialect] = "json_schema"
    # Reasoning models think, but Chat Completions neither returns nor accepts their reasoning.
    capabilities = Capabilities(tools=True, streaming=True, thinking=False, vision=True, image_urls=True)
    requires_api_key = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        base_url = config.base_url or OPENAI_BASE_URL
        # OpenAI's own API rejects `max_tokens` for reasoning models; most compatible servers know only `max_tokens`.
        self._max_tokens_field = (
            "max_completion_tokens" if urlsplit(base_url).hostname == "api.openai.com" else "max_tokens"
        )
        self.client = openai.AsyncOpenAI(
            # The key comes from the provider row, never from OPENAI_API_KEY; without one the base class
            # refuses every call before it reaches the client, so the placeholder goes out only for a kind
            # that needs no key (a keyless OpenAI-compatible server), where the SDK still wants one.
            api_key=config.api_key or "not-configured",
            base_url=base_url,
            timeout=config.timeout,
            max_retries=0,  # the base class retries, and never once a stream has yielded
        )

    # --- calls -----------------------------------------------------------------------

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        builder = MessageBuilder()
        calls = _ToolCallAssembler()
        usage: Usage | None = None
        raw_reason: str | None = None
        refused = False
        model = request.model
        # The SDK makes the request (auth, base URL, its own errors for a failed status), but the chunks are
        # read as plain dicts: building its pydantic model for each one cost more than the rest of the stream.
        async with self._raw_stream(request) as response:
            async for chunk in _stream_chunks(response.http_response):
                model = chunk.get("model") or model
                if chunk.get("usage") is not None:
                    usage = normalise_usage(chunk["usage"])
                if choices := chunk.get("choices"):
                    choice = choices[0]
                    delta = choice.get("delta") or {}
                    thinking = _reasoning_text(delta)
                    if thinking:
                        builder.add_thinking(thinking)
                        yield ThinkingDelta(text=thinking)
                    refusal = delta.get("refusal")
                    text = (delta.get("content") or "") + (refusal or "")
                    refused = refused or bool(refusal)
                    if text:
                        builder.add_text(text)
                        yield TextDelta(text=text)
                    if delta.get("tool_calls"):
                        calls.add(delta["tool_calls"])
                    if choice.get("finish_reason"):
                        raw_reason = choice["finish_reason"]
                        # Arguments arrive interleaved by index, so a call is only known complete here.
                        for call in calls.finish():
                            builder.add_tool_call(call)
                            yield ToolCallEvent(call=call)
        for call in calls.finish():  # a server that ended the stream without a finish_reason
            builder.add_tool_call(call)
            yield ToolCallEvent(call=call)
        if usage is not None:
            yield UsageEvent(usage=usage)
        message = builder.message()
        yield FinishEvent(
            reason=stop_reason(raw_reason, has_tool_calls=bool(message.tool_calls), refused=refused),
            raw_reason=raw_reason,
            message=message,
            usage=usage or Usage(),
            model=model,
        )

    def _raw_stream(self, request: ChatRequest) -> AsyncResponseContextManager[Any]:
        """``chat.completions.with_streaming_response.create`` without its parameter transform.

        ``create`` walks the whole request through its TypedDict transform first: about 0.45 ms a message, 185 ms
        for a 400-message history. The body built here is already wire JSON, so it goes to the client's own
        ``post`` (the same request, headers, auth and error mapping).
        """
        body = {**self._request_body(request), "stream": True, "stream_options": {"include_usage": True}}
        return AsyncResponseContextManager(
            self.client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                options={"headers": {RAW_RESPONSE_HEADER: "stream"}},
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
        )

    async def _complete(self, request: ChatRequest) -> Completion:
        # As for the stream: the body is wire JSON already, so it skips ``create``'s per-message transform.
        response: ChatCompletion = await self.client.post(
            "/chat/completions", body=self._request_body(request), cast_to=ChatCompletion
        )
        builder = MessageBuilder()
        raw_reason: str | None = None
        refused = False
        if response.choices:
            choice = response.choices[0]
            raw_reason = choice.finish_reason
            wire = choice.message
            thinking = _reasoning_text(wire.model_extra)
            if thinking:
                builder.add_thinking(thinking)
            text = (wire.content or "") + (wire.refusal or "")
            refused = bool(wire.refusal)
            if text:
                builder.add_text(text)
            for tool_call in wire.tool_calls or []:
                if tool_call.type != "function":
                    continue  # custom (free-form) tools are never offered by this adapter
                arguments, invalid = parse_arguments(tool_call.function.arguments)
                builder.add_tool_call(
                    ToolCallBlock(
                        id=tool_call.id or new_tool_call_id(),
                        name=tool_call.function.name,
                        arguments=arguments,
                        invalid_arguments=invalid,
                    )
                )
        message = builder.message()
        return Completion(
            message=message,
            usage=normalise_usage(response.usage.model_dump()) if response.usage else Usage(),
            stop_reason=stop_reason(raw_reason, has_tool_calls=bool(message.tool_calls), refused=refused),
            raw_reason=raw_reason,
            model=response.model or request.model,
        )

    async def _list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        async for model in self.client.models.list():
            extra = model.model_extra or {}
            name = extra.get("name")
            window = next((extra[key] for key in CONTEXT_WINDOW_FIELDS if isinstance(extra.get(key), int)), None)
            models.append(
                ModelInfo(id=model.id, display_name=name if isinstance(name, str) else model.id, context_window=window)
            )
        return models

    # --- errors ----------------------------------------------------------------------

    def map_error(self, exc: Exception) -> ProviderError:
        provider = self.config.name
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = _error_message(exc)
            if status in (401, 403):
                return ProviderAuthenticationError(message, provider=provider, status=status)
            if status == 429:
                retry_after = retry_after_seconds(exc.response.headers)
                return ProviderRateLimited(message, provider=provider, status=status, retry_after=retry_after)
            if status >= 500:
                return ProviderUnavailable(message, provider=provider, status=status)
            if status == 408:
                return ProviderTimeout(message, provider=provider, status=status)
            return ProviderBadRequest(message, provider=provider, status=status)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            return ProviderTimeout(f"Request timed out: {exc}", provider=provider)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return ProviderUnavailable(f"Could not reach the server: {exc}", provider=provider)
        if isinstance(exc, openai.APIError):
            # An error event inside a stream carries no HTTP status, only the error object's type.
            message = _error_message(exc)
            if exc.type == "server_error":
                return ProviderUnavailable(message, provider=provider)
            if exc.code == "rate_limit_exceeded":
                return ProviderRateLimited(message, provider=provider, status=None)
            return ProviderError(message, provider=provider)
        return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider)

    # --- canonical -> wire -----------------------------------------------------------

    def _request_body(self, request: ChatRequest) -> dict[str, Any]:
        messages = wire_messages(request.messages, request.system, vision=self.capabilities.vision)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        options = request.options
        if request.tools:
            body["tools"] = wire_tools(request.tools)
            if options.tool_choice is not None:
                body["tool_choice"] = wire_tool_choice(options.tool_choice)
        if options.max_tokens is not None:
            body[self._max_tokens_field] = options.max_tokens
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.stop:
            body["stop"] = list(options.stop)
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.seed is not None:
            body["seed"] = options.seed
        if options.response_format is not None:
            # Already this wire's own shape; compatible servers that lack a type answer with their own 400.
            body["response_format"] = dict(options.response_format)
        # thinking_budget has no Chat Completions counterpart (reasoning_effort is a level, for some models only).
        return body


def wire_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode  # "auto", "none" and "required" are this wire's own words


def _user_content(message: Message, *, vision: bool) -> str | list[dict[str, Any]]:
    """Plain text, or content parts in the blocks' order when the message holds images this model can see."""
    if not message.images:
        return message.text
    if not vision:
        return "".join(
            block.text if isinstance(block, TextBlock) else f"\n{image_placeholder(block)}\n"
            for block in message.content
            if isinstance(block, TextBlock | ImageBlock)
        ).strip()
    parts: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock) and block.text:
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            url = block.url or f"data:{block.media_type};base64,{block.data}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def wire_messages(
    messages: Iterable[Message], system: str | None, *, vision: bool = True
) -> list[ChatCompletionMessageParam]:
    wire: list[dict[str, Any]] = []
    if system:
        wire.append({"role": "system", "content": system})
    for message in messages:
        if message.role == "tool":
            wire.extend(_tool_result(block) for block in message.content if isinstance(block, ToolResultBlock))
            continue
        # Thinking blocks are dropped: this wire has no place for reasoning, ours or another provider's.
        text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
        if message.role == "user":
            wire.append({"role": "user", "content": _user_content(message, vision=vision)})
            # Tolerate results stored on a user turn (Anthropic's own shape): the wire wants tool messages.
            wire.extend(_tool_result(block) for block in message.content if isinstance(block, ToolResultBlock))
            continue
        tool_calls = [
            {
                "id": call.id,
                "type": "function",
                # Arguments this wire could not parse are replayed as {}: the API only accepts JSON here.
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
        if not text and not tool_calls:
            continue  # e.g. a thinking-only turn from another provider: nothing this wire can carry
        entry: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_calls:
            entry["tool_calls"] = tool_calls
        wire.append(entry)
    return cast(list[ChatCompletionMessageParam], wire)


def _tool_result(block: ToolResultBlock) -> dict[str, Any]:
    # The wire has no error flag: say it in the content so the model sees the call failed.
    content = f"Error: {block.content}" if block.is_error else block.content
    return {"role": "tool", "tool_call_id": block.tool_call_id, "content": content}


def wire_tools(tools: Iterable[ToolSpec]) -> list[ChatCompletionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": spec.description,
                "parameters": tool_schema_for(OpenAIAdapter.schema_dialect, spec.input_schema),
            },
        }
        for spec in tools
    ]


# --- wire -> canonical ---------------------------------------------------------------


async def _stream_chunks(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a Chat Completions stream as dicts, up to ``[DONE]``, read the way the SDK's stream reads them.

    An error object in the stream and a transport failure while reading raise
    the same SDK exceptions the SDK's stream raises, so map_error treats them alike.
    """
    try:
        async for _, data in sse_events(response.aiter_bytes()):
            if data.startswith(b"[DONE]"):
                await drain(response)
                return
            if not data:
                continue
            chunk = orjson.loads(data)
            if not isinstance(chunk, dict):
                continue
            error = chunk.get("error")
            if error:
                message = error.get("message") if isinstance(error, dict) else None
                if not message or not isinstance(message, str):
                    message = "An error occurred during streaming"
                raise openai.APIError(message, response.request, body=error)
            yield chunk
    except httpx2.TimeoutException as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    # ssl and anyio errors: TLS failures httpx2 does not map yet, which the SDK counts as connection errors too.
    except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
        raise openai.APIConnectionError(request=response.request) from exc


def normalise_usage(usage: Mapping[str, Any]) -> Usage:
    """OpenAI already counts cached tokens in prompt_tokens and reasoning in completion_tokens."""
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cache_read_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def stop_reason(raw: str | None, *, has_tool_calls: bool, refused: bool = False) -> StopReason:
    # Compatible servers (Ollama among them) often say "stop" after calling tools.
    if has_tool_calls:
        return "tool_calls"
    if refused:
        return "refused"
    return STOP_REASONS.get(raw or "", "end")


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _ToolCallAssembler:
    """Collects streamed tool-call pieces (the wire's dicts), keyed by index, until the stream says they are done."""

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._by_index: dict[int, _PartialCall] = {}

    def add(self, pieces: list[dict[str, Any]]) -> None:
        for position, piece in enumerate(pieces):
            index = piece.get("index")
            if index is None:
                index = position
            piece_id = piece.get("id")
            call = self._by_index.get(index)
            # Some compatible servers (Gemini's) send every call whole at index 0, told apart only by id.
            if call is None or (piece_id and call.id and piece_id != call.id):
                call = self._by_index[index] = _PartialCall()
                self._calls.append(call)
            if piece_id:
                call.id = piece_id
            function = piece.get("function")
            if function is not None:
                if function.get("name"):
                    call.name = function["name"]
                if function.get("arguments"):
                    call.arguments.append(function["arguments"])

    def finish(self) -> list[ToolCallBlock]:
        done = []
        for call in self._calls:
            arguments, invalid = parse_arguments("".join(call.arguments))
            done.append(
                ToolCallBlock(
                    id=call.id or new_tool_call_id(), name=call.name, arguments=arguments, invalid_arguments=invalid
                )
            )
        self._calls, self._by_index = [], {}
        return done


def _reasoning_text(extra: dict[str, Any] | None) -> str:
    for key in REASONING_FIELDS:
        value = (extra or {}).get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _error_message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    return exc.message


__all__ = ["OpenAIAdapter", "normalise_usage", "stop_reason", "wire_messages", "wire_tool_choice", "wire_tools"]
