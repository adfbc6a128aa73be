"""Ollama adapter: canonical conversation <-> Ollama's native ``/api/chat`` over the official ``ollama`` async client.

Ollama keys tool results by tool name and gives tool calls no ids (the SDK's models drop any the server adds), so
ids are made up here; thinking comes back as plain text with no signature and is replayed only to Ollama.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, ClassVar, cast

import httpx
import ollama
import pydantic

from ..base import (
    FREE,
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
    ToolResultBlock,
    Usage,
    UsageEvent,
)

DEFAULT_BASE_URL = "http://localhost:11434"
KIND = "ollama"


class OllamaAdapter(ProviderAdapter):
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Ollama"
    price_source: ClassVar[PriceSource] = FREE  # local models
    default_base_url: ClassVar[str | None] = DEFAULT_BASE_URL
    schema_dialect: ClassVar[SchemaDialect] = "json_schema"
    # Images go as base64 ``images`` (multimodal models see them; a text-only model gets the server's error).
    # The server fetches nothing, so an http(s) image url reaches the model as a placeholder naming it.
    capabilities: ClassVar[Capabilities] = Capabilities(
        tools=True, streaming=True, thinking=True, vision=True, image_urls=False
    )
    requires_api_key: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # The SDK has no retries of its own (the base class retries); a key is only needed for Ollama's hosted API.
        self.client = ollama.AsyncClient(
            host=config.base_url or DEFAULT_BASE_URL,
            timeout=config.timeout,
            headers={"Authorization": f"Bearer {config.api_key}"} if config.api_key else None,
        )

    # --- calls -----------------------------------------------------------------------

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        builder = MessageBuilder()
        called_tools = False
        # The SDK types the stream as an AsyncIterator; it is an async generator, which has aclose().
        stream = await self.client.chat(stream=True, **self._chat_arguments(request))
        # aclosing: a consumer that stops early must release the HTTP connection now, not at garbage collection.
        async with aclosing(cast(AsyncGenerator[ollama.ChatResponse, None], stream)) as chunks:
            async for chunk in chunks:
                message = chunk.message
                if message.thinking:
                    builder.add_thinking(message.thinking, origin=KIND)
                    yield ThinkingDelta(text=message.thinking)
                if message.content:
                    builder.add_text(message.content)
                    yield TextDelta(text=message.content)
                for call in _tool_calls(message):
                    called_tools = True
                    builder.add_tool_call(call)
                    yield ToolCallEvent(call=call)
                if chunk.done:
                    usage = _usage(chunk)
                    yield UsageEvent(usage=usage)
                    yield FinishEvent(
                        reason=_stop_reason(chunk.done_reason, called_tools),
                        raw_reason=chunk.done_reason,
                        message=builder.message(),
                        usage=usage,
                        model=chunk.model or request.model,
                    )
                    return
        # A stream cut before its ``done`` line lost the usage and maybe part of the reply: the server went away.
        raise ProviderUnavailable("Ollama's stream ended before its final chunk.", provider=self.config.name)

    async def _complete(self, request: ChatRequest) -> Completion:
        response = await self.client.chat(stream=False, **self._chat_arguments(request))
        builder = MessageBuilder()
        if response.message.thinking:
            builder.add_thinking(response.message.thinking, origin=KIND)
        if response.message.content:
            builder.add_text(response.message.content)
        calls = _tool_calls(response.message)
        for call in calls:
            builder.add_tool_call(call)
        return Completion(
            message=builder.message(),
            usage=_usage(response),
            stop_reason=_stop_reason(response.done_reason, bool(calls)),
            raw_reason=response.done_reason,
            model=response.model or request.model,
        )

    async def _list_models(self) -> list[ModelInfo]:
        # /api/tags gives no context length (only /api/show, one call per model), so context_window stays unknown.
        listing = await self.client.list()
        return [ModelInfo(id=model.model, display_name=model.model) for model in listing.models if model.model]

    # --- canonical -> wire -----------------------------------------------------------

    @classmethod
    def unsupported_options(cls, options: GenerationOptions) -> list[str]:
        # The server lets the model decide; "none" is kept by offering no tools, but it cannot force a call.
        if options.tool_choice is not None and options.tool_choice.mode in ("required", "tool"):
            return ["tool_choice"]
        return []

    def _chat_arguments(self, request: ChatRequest) -> dict[str, Any]:
        generation = request.options
        options: dict[str, Any] = {}
        if generation.max_tokens is not None:
            options["num_predict"] = generation.max_tokens
        if generation.temperature is not None:
            options["temperature"] = generation.temperature
        if generation.top_p is not None:
            options["top_p"] = generation.top_p
        if generation.seed is not None:
            options["seed"] = generation.seed
        if generation.stop:
            options["stop"] = list(generation.stop)
        offer_tools = not (generation.tool_choice and generation.tool_choice.mode == "none")
        tools = [_wire_tool(spec.name, spec.description, spec.input_schema) for spec in request.tools]
        return {
            "model": request.model,
            "messages": _wire_messages(request.system, request.messages, vision=self.capabilities.vision),
            # The SDK sends ``"tools": []`` even for None; the server reads an empty list as no tools.
            "tools": (tools if offer_tools else None) or None,
            "options": options or None,
            "format": _format(generation),
            # Ollama has no token budget for thinking, only on/off; None leaves the model's default.
            "think": True if request.options.thinking_budget else None,
        }

    # --- errors ----------------------------------------------------------------------

    def map_error(self, exc: Exception) -> ProviderError:
        name = self.config.name
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, ollama.ResponseError):
            return _status_error(exc, name)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(f"Ollama did not answer in time: {exc}", provider=name)
        # The SDK turns httpx.ConnectError into the builtin ConnectionError outside streams, and lets it through inside.
        if isinstance(exc, httpx.TransportError | ConnectionError):
            return ProviderUnavailable(f"Could not reach Ollama: {exc}", provider=name)
        if isinstance(exc, ollama.RequestError):
            return ProviderBadRequest(exc.error, provider=name)
        if isinstance(exc, pydantic.ValidationError):
            return ProviderError(f"Ollama sent a reply the SDK could not read: {exc}", provider=name)
        return ProviderError(f"{type(exc).__name__}: {exc}", provider=name)


def _status_error(exc: ollama.ResponseError, provider: str) -> ProviderError:
    status = exc.status_code
    message = str(exc.error)
    if status in (401, 403):
        return ProviderAuthenticationError(message, provider=provider, status=status)
    if status == 429:
        return ProviderRateLimited(message, provider=provider, status=status, retry_after=_retry_after(exc))
    if status >= 500:
        return ProviderUnavailable(message, provider=provider, status=status)
    if 400 <= status < 500:
        return ProviderBadRequest(message, provider=provider, status=status)
    # -1: an ``{"error": ...}`` line in the middle of a stream, after a 200.
    return ProviderError(message, provider=provider, status=None if status < 0 else status)


def _retry_after(exc: ollama.ResponseError) -> float | None:
    # ResponseError keeps no response, but the SDK raises it ``from None`` inside its handler of
    # httpx.HTTPStatusError, so that error (and its headers) is still the implicit context.
    context = exc.__context__
    if isinstance(context, httpx.HTTPStatusError):
        return retry_after_seconds(context.response.headers)
    return None


def _wire_tool(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": tool_schema_for(OllamaAdapter.schema_dialect, schema),
        },
    }


def _format(options: GenerationOptions) -> str | dict[str, Any] | None:
    """``format``: "json" for any JSON value, or the JSON Schema the reply must follow."""
    if options.response_format_type == "json_object":
        return "json"
    return options.response_schema


def _wire_user(message: Message, *, vision: bool) -> dict[str, Any]:
    if not message.images:
        return {"role": "user", "content": message.text}
    text: list[str] = []
    images: list[str] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ImageBlock):
            if vision and block.data:
                images.append(block.data)
            else:
                text.append(f"\n{image_placeholder(block)}\n")
    wire: dict[str, Any] = {"role": "user", "content": "".join(text).strip()}
    if images:
        wire["images"] = images
    return wire


def _wire_messages(system: str | None, messages: list[Message], *, vision: bool = True) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    # Results written by providers that key by id may lack the tool's name, which is all Ollama matches on.
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    for message in messages:
        if message.role == "tool":
            wire.extend(
                _wire_tool_result(block, names) for block in message.content if isinstance(block, ToolResultBlock)
            )
        elif message.role == "assistant":
            wire.append(_wire_assistant(message))
        else:
            wire.append(_wire_user(message, vision=vision))
    return wire


def _wire_assistant(message: Message) -> dict[str, Any]:
    text: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ThinkingBlock) and block.origin == KIND and not block.redacted:
            # Another provider's reasoning (and its signatures) means nothing to an Ollama model: never sent.
            thinking.append(block.text)
        elif isinstance(block, ToolCallBlock):
            calls.append({"function": {"name": block.name, "arguments": dict(block.arguments)}})
    wire: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if thinking:
        wire["thinking"] = "".join(thinking)
    if calls:
        wire["tool_calls"] = calls
    return wire


def _wire_tool_result(block: ToolResultBlock, names: Mapping[str, str]) -> dict[str, Any]:
    # The wire has no error flag: say it in the content so the model does not take it for a result.
    content = f"Error: {block.content}" if block.is_error else block.content
    return {"role": "tool", "content": content, "tool_name": block.name or names.get(block.tool_call_id, "")}


# --- wire -> canonical ---------------------------------------------------------------


def _tool_calls(message: ollama.Message) -> list[ToolCallBlock]:
    calls: list[ToolCallBlock] = []
    for call in message.tool_calls or []:
        arguments, invalid = parse_arguments(dict(call.function.arguments))
        calls.append(
            ToolCallBlock(
                id=new_tool_call_id(), name=call.function.name, arguments=arguments, invalid_arguments=invalid
            )
        )
    return calls


def _usage(response: ollama.ChatResponse) -> Usage:
    # eval_count already includes thinking tokens, and Ollama reports neither a cache nor reasoning separately.
    return Usage(input_tokens=response.prompt_eval_count or 0, output_tokens=response.eval_count or 0)


def _stop_reason(done_reason: str | None, called_tools: bool) -> StopReason:
    # done_reason stays "stop" when the model called tools.
    if called_tools:
        return "tool_calls"
    if done_reason == "length":
        return "length"
    return "end"
