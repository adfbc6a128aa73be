"""Google Gemini adapter over the official ``google-genai`` async client.

Converts the canonical conversation to Gemini ``contents`` (thought signatures
replayed only to Gemini) and Gemini responses back to canonical events.
"""

import base64
import binascii
import mimetypes
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gt

from ..base import (
    ChatRequest,
    MessageBuilder,
    PriceSource,
    ProviderAdapter,
    ProviderConfig,
    TokenCount,
    image_placeholder,
    new_tool_call_id,
    parse_arguments,
    retry_after_seconds,
)
from ..errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..schema import SchemaDialect, tool_schema_for
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

try:  # the SDK runs on httpx2 by default and on httpx when told to (GOOGLE_GENAI_HTTP_CLIENT)
    import httpx2
except ImportError:  # pragma: no cover
    httpx2 = None  # type: ignore[assignment]
try:
    import httpx
except ImportError:  # pragma: no cover
    httpx = None  # type: ignore[assignment]

KIND = "gemini"
# Pinned rather than left to the SDK, whose default follows the GOOGLE_GENAI_API_VERSION environment variable.
API_VERSION = "v1"
SIGNATURE_KEY = "thought_signature"
# Gemini 3 rejects a function call in history that carries no thought signature. For calls it did not
# make (a conversation handed over from another provider) Google documents this placeholder value.
FOREIGN_CALL_SIGNATURE = b"skip_thought_signature_validator"

_REFUSALS = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "MODEL_ARMOR",
}


def _exceptions(name: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(module, name) for module in (httpx2, httpx) if module is not None)


_TIMEOUTS = (*_exceptions("TimeoutException"), TimeoutError)
_TRANSPORT_ERRORS = _exceptions("TransportError")


class GeminiAdapter(ProviderAdapter):
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Google Gemini"
    price_source: ClassVar[PriceSource] = PriceSource(genai_prices="google")
    fallback_key_env: ClassVar[tuple[str, ...]] = ("GOOGLE_API_KEY",)  # the google-genai SDK's own name
    schema_dialect: ClassVar[SchemaDialect] = "gemini"
    # An http(s) image goes as file_data: the Gemini API fetches public and signed URLs itself.
    capabilities: ClassVar[Capabilities] = Capabilities(
        tools=True, streaming=True, thinking=True, vision=True, image_urls=True
    )
    requires_api_key: ClassVar[bool] = True

    @classmethod
    def unsupported_content(cls, messages: Iterable[Message]) -> list[str]:
        # file_data needs the file's type: a url whose type neither the block nor its extension tells cannot go.
        untyped = any(image.url and not _url_mime_type(image) for message in messages for image in message.images)
        return super().unsupported_content(messages) or (["image_url"] if untyped else [])

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        # genai.Client refuses to exist without a key; an unconfigured adapter raises ProviderNotConfigured on use.
        self._client: genai.Client | None = self._make_client() if self.configured else None

    def _make_client(self) -> genai.Client:
        return genai.Client(
            vertexai=False,
            api_key=self.config.api_key,
            http_options=gt.HttpOptions(
                base_url=self.config.base_url,
                api_version=API_VERSION,
                timeout=int(self.config.timeout * 1000),
                # One attempt: the base class owns retries (and must not retry a stream that has yielded).
                retry_options=gt.HttpRetryOptions(attempts=1),
            ),
        )

    @property
    def client(self) -> genai.Client:
        if self._client is None:
            raise ProviderNotConfigured("No API key configured.", provider=self.config.name)
        return self._client

    # --- calls ----------------------------------------------------------------------------

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        chunks = await self.client.aio.models.generate_content_stream(
            model=request.model, contents=to_contents(request.messages), config=generation_config(request)
        )
        reader = _ResponseReader()
        try:
            async for chunk in chunks:
                for event in reader.read(chunk):
                    yield event
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if reader.saw_usage:
            yield UsageEvent(usage=reader.usage)
        yield reader.finish(request.model)

    async def _complete(self, request: ChatRequest) -> Completion:
        response = await self.client.aio.models.generate_content(
            model=request.model, contents=to_contents(request.messages), config=generation_config(request)
        )
        reader = _ResponseReader()
        for _ in reader.read(response):
            pass
        finish = reader.finish(request.model)
        return Completion(
            message=finish.message,
            usage=finish.usage,
            stop_reason=finish.reason,
            raw_reason=finish.raw_reason,
            model=finish.model,
        )

    async def count_tokens(
        self,
        *,
        messages: list[Message],
        model: str,
        tools: list[ToolSpec] | None = None,
        system: str | None = None,
    ) -> TokenCount:
        """Gemini's own count (``models.count_tokens``) of the prompt as a request here would send it.

        On the Gemini Developer API the SDK refuses a system instruction or tools in CountTokensConfig, but the
        endpoint counts them inside a ``generateContentRequest``; that goes in the body as the SDK's
        ``extra_body``. The top-level ``contents`` the SDK insists on are then ignored by the API.
        """
        self._ensure_configured()
        response = await self._with_retries(lambda: self._count_tokens(messages, model, tools or [], system))
        return TokenCount(input_tokens=response.total_tokens or 0, estimated=False)

    async def _count_tokens(
        self, messages: list[Message], model: str, tools: list[ToolSpec], system: str | None
    ) -> gt.CountTokensResponse:
        contents = to_contents(messages)
        if not contents:
            raise ProviderBadRequest("Nothing to count: the messages hold no content.", provider=self.config.name)
        config: gt.CountTokensConfig | None = None
        if system or tools:
            # The same contents, system instruction and function declarations generation_config sends.
            full: dict[str, Any] = {
                "model": _model_resource(model),
                "contents": [_wire_json(content) for content in contents],
            }
            if system:
                full["systemInstruction"] = {"parts": [{"text": system}]}
            if tools:
                declarations = gt.Tool(function_declarations=[_declaration(spec) for spec in tools])
                full["tools"] = [_wire_json(declarations)]
            config = gt.CountTokensConfig(http_options=gt.HttpOptions(extra_body={"generateContentRequest": full}))
        return await self.client.aio.models.count_tokens(model=model, contents=contents, config=config)

    async def _list_models(self) -> list[ModelInfo]:
        models: list[ModelInfo] = []
        async for model in await self.client.aio.models.list(config=gt.ListModelsConfig(page_size=1000)):
            # Embedding, TTS and image models share the endpoint; only generateContent models can chat.
            if model.supported_actions is not None and "generateContent" not in model.supported_actions:
                continue
            model_id = (model.name or "").removeprefix("models/")
            display_name = model.display_name or model_id
            models.append(ModelInfo(id=model_id, display_name=display_name, context_window=model.input_token_limit))
        return models

    # --- errors ---------------------------------------------------------------------------

    def map_error(self, exc: Exception) -> ProviderError:
        provider = self.config.name
        if isinstance(exc, genai_errors.APIError):
            status = exc.code
            message = exc.message or str(exc)
            if status in (401, 403):
                return ProviderAuthenticationError(message, provider=provider, status=status)
            if status == 429:
                return ProviderRateLimited(message, provider=provider, status=status, retry_after=_retry_after(exc))
            if status == 408:
                return ProviderTimeout(message, provider=provider, status=status)
            if status is not None and status >= 500:  # 5xx, including 529 overloaded
                return ProviderUnavailable(message, provider=provider, status=status)
            if status is not None and 400 <= status < 500:
                return ProviderBadRequest(message, provider=provider, status=status)
            return ProviderError(message, provider=provider, status=status)
        if isinstance(exc, _TIMEOUTS):
            return ProviderTimeout(f"Request timed out: {exc}", provider=provider)
        if isinstance(exc, _TRANSPORT_ERRORS):
            return ProviderUnavailable(f"Could not reach the server: {exc}", provider=provider)
        if isinstance(exc, pydantic.ValidationError):
            # The SDK validates the request (e.g. a tool schema it cannot express) before sending it.
            return ProviderBadRequest(f"Request rejected by the Gemini SDK: {exc}", provider=provider)
        return ProviderError(f"{type(exc).__name__}: {exc}", provider=provider)


# --- canonical -> wire ------------------------------------------------------------------


def to_contents(messages: Iterable[Message]) -> list[gt.Content]:
    """Gemini ``contents``: tool results become user turns; consecutive turns of one role are merged.

    Merging keeps parallel function responses in the one user turn that must follow the model turn that
    called them, however many ``tool`` messages they were stored in.
    """
    call_names: dict[str, str] = {}
    contents: list[gt.Content] = []
    for message in messages:
        if message.role == "assistant":
            role, parts = "model", _model_parts(message, call_names)
        else:
            role, parts = "user", _user_parts(message, call_names)
        if not parts:
            continue
        if contents and contents[-1].role == role:
            contents[-1].parts = [*(contents[-1].parts or []), *parts]
        else:
            contents.append(gt.Content(role=role, parts=parts))
    return contents


def _own_signature(block: TextBlock | ThinkingBlock | ToolCallBlock) -> bytes | None:
    if block.origin != KIND or not block.opaque:
        return None
    encoded = block.opaque.get(SIGNATURE_KEY)
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _model_parts(message: Message, call_names: dict[str, str]) -> list[gt.Part]:
    parts: list[gt.Part] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            signature = _own_signature(block)
            # The API rejects an empty text part; an empty one that carries a signature is the model's own.
            if block.text or signature:
                parts.append(gt.Part(text=block.text, thought_signature=signature))
        elif isinstance(block, ThinkingBlock):
            # Another provider's reasoning means nothing to Gemini (and its signature must never leave it).
            if block.origin == KIND and (block.text or block.opaque):
                parts.append(gt.Part(text=block.text, thought=True, thought_signature=_own_signature(block)))
        elif isinstance(block, ToolCallBlock):
            call_names[block.id] = block.name
            parts.append(
                gt.Part(
                    function_call=gt.FunctionCall(id=block.id, name=block.name, args=dict(block.arguments)),
                    thought_signature=_own_signature(block),
                )
            )
    calls = [part for part in parts if part.function_call is not None]
    # The signature of a turn's calls sits on its first call; calls from elsewhere get the placeholder.
    if calls and not any(part.thought_signature for part in calls):
        calls[0].thought_signature = FOREIGN_CALL_SIGNATURE
    return parts


def _user_parts(message: Message, call_names: dict[str, str]) -> list[gt.Part]:
    parts: list[gt.Part] = []
    for block in message.content:
        if isinstance(block, TextBlock) and block.text:
            parts.append(gt.Part(text=block.text))
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, ToolResultBlock):
            # Gemini matches responses to calls by name; older rows may lack it, the call still has it.
            name = block.name or call_names.get(block.tool_call_id, "")
            key = "error" if block.is_error else "result"
            parts.append(
                gt.Part(
                    function_response=gt.FunctionResponse(
                        id=block.tool_call_id, name=name, response={key: block.content}
                    )
                )
            )
    return parts


def _url_mime_type(block: ImageBlock) -> str | None:
    if block.media_type:
        return block.media_type
    guessed = mimetypes.guess_type((block.url or "").split("?", 1)[0])[0]
    return guessed if guessed and guessed.startswith("image/") else None


def _image_part(block: ImageBlock) -> gt.Part:
    if block.url:
        # file_data requires the file's type; history holding a url of unknown type replays as a placeholder.
        mime_type = _url_mime_type(block)
        if mime_type is None:
            return gt.Part(text=image_placeholder(block))
        return gt.Part(file_data=gt.FileData(file_uri=block.url, mime_type=mime_type))
    return gt.Part(inline_data=gt.Blob(data=base64.b64decode(block.data or ""), mime_type=block.media_type))


FUNCTION_CALLING_MODES = {
    "auto": gt.FunctionCallingConfigMode.AUTO,
    "none": gt.FunctionCallingConfigMode.NONE,
    "required": gt.FunctionCallingConfigMode.ANY,
    "tool": gt.FunctionCallingConfigMode.ANY,
}


def _tool_config(choice: ToolChoice) -> gt.ToolConfig:
    return gt.ToolConfig(
        function_calling_config=gt.FunctionCallingConfig(
            mode=FUNCTION_CALLING_MODES[choice.mode],
            allowed_function_names=[choice.name] if choice.mode == "tool" and choice.name else None,
        )
    )


def generation_config(request: ChatRequest) -> gt.GenerateContentConfig:
    options = request.options
    thinking = None
    if options.thinking_budget is not None:
        thinking = gt.ThinkingConfig(
            thinking_budget=options.thinking_budget, include_thoughts=options.thinking_budget != 0
        )
    tools: gt.ToolListUnion | None = (
        [gt.Tool(function_declarations=[_declaration(spec) for spec in request.tools])] if request.tools else None
    )
    json_output = options.response_format_type in ("json_object", "json_schema")
    return gt.GenerateContentConfig(
        system_instruction=request.system or None,
        max_output_tokens=options.max_tokens,
        temperature=options.temperature,
        top_p=options.top_p,
        seed=options.seed,
        stop_sequences=list(options.stop) if options.stop else None,
        response_mime_type="application/json" if json_output else None,
        # The full JSON Schema, as given; response_schema would take only the OpenAPI subset.
        response_json_schema=options.response_schema,
        thinking_config=thinking,
        tools=tools,
        tool_config=_tool_config(options.tool_choice) if tools and options.tool_choice else None,
        # Our tools are declarations the chat engine runs itself; the SDK must neither call them nor re-send
        # requests on its own (automatic continuation would be a second, hidden request).
        automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True),
        automatic_continuation=False,
    )


def _model_resource(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def _wire_json(value: pydantic.BaseModel) -> Any:
    # The SDK's models dump to the API's JSON: lowerCamelCase names, bytes as base64.
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def _declaration(spec: ToolSpec) -> gt.FunctionDeclaration:
    schema = tool_schema_for(GeminiAdapter.schema_dialect, spec.input_schema)
    # Gemini rejects an OBJECT with no properties; a tool without arguments declares no parameters at all.
    has_parameters = bool(schema.get("properties")) or schema.get("type") not in (None, "object", "OBJECT")
    return gt.FunctionDeclaration(
        name=spec.name,
        description=spec.description or None,
        parameters=gt.Schema.model_validate(schema) if has_parameters else None,
    )


# --- wire -> canonical ------------------------------------------------------------------


def _signature_opaque(part: gt.Part) -> dict[str, Any] | None:
    if not part.thought_signature:
        return None
    return {SIGNATURE_KEY: base64.b64encode(part.thought_signature).decode("ascii")}


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def normalise_usage(metadata: gt.GenerateContentResponseUsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage()
    thoughts = metadata.thoughts_token_count or 0
    return Usage(
        # Prompt tokens include cached ones; tool-use prompt tokens (built-in tools) are billed as input too.
        input_tokens=(metadata.prompt_token_count or 0) + (metadata.tool_use_prompt_token_count or 0),
        output_tokens=(metadata.candidates_token_count or 0) + thoughts,
        cache_read_tokens=metadata.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


def stop_reason(raw: str | None, *, called_tools: bool) -> StopReason:
    if called_tools:
        return "tool_calls"
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _REFUSALS:
        return "refused"
    return "end"


@dataclass
class _ResponseReader:
    """Folds GenerateContentResponse chunks (one for JSON, many for a stream) into canonical events."""

    builder: MessageBuilder = field(default_factory=MessageBuilder)
    usage: Usage = field(default_factory=Usage)
    saw_usage: bool = False
    raw_reason: str | None = None
    model_version: str | None = None
    called_tools: bool = False

    def read(self, response: gt.GenerateContentResponse) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if response.usage_metadata is not None:
            # Each chunk carries the running total so far, not an increment.
            self.usage = normalise_usage(response.usage_metadata)
            self.saw_usage = True
        self.model_version = response.model_version or self.model_version
        if not response.candidates:
            if response.prompt_feedback is not None and response.prompt_feedback.block_reason is not None:
                self.raw_reason = _enum_value(response.prompt_feedback.block_reason)
            return events
        candidate = response.candidates[0]
        if candidate.finish_reason is not None:
            self.raw_reason = _enum_value(candidate.finish_reason)
        for part in (candidate.content.parts or []) if candidate.content else []:
            events.extend(self._read_part(part))
        return events

    def _read_part(self, part: gt.Part) -> list[StreamEvent]:
        opaque = _signature_opaque(part)
        origin = KIND if opaque else None
        if part.function_call is not None:
            call = part.function_call
            arguments, invalid = parse_arguments(call.args)
            block = ToolCallBlock(
                id=call.id or new_tool_call_id(),
                name=call.name or "",
                arguments=arguments,
                invalid_arguments=invalid,
                origin=origin,
                opaque=opaque,
            )
            self.builder.add_tool_call(block)
            self.called_tools = True
            return [ToolCallEvent(call=block)]
        if part.text is None:
            return []  # inline data, code execution and the like: nothing canonical to hold them
        if part.thought:
            # Always marked as ours: thought summaries are only ever replayed to Gemini.
            self.builder.add_thinking(part.text, origin=KIND, opaque=opaque)
            return [ThinkingDelta(text=part.text)] if part.text else []
        if part.text or opaque:
            self.builder.add_text(part.text, origin=origin, opaque=opaque)
        return [TextDelta(text=part.text)] if part.text else []

    def finish(self, requested_model: str) -> FinishEvent:
        return FinishEvent(
            reason=stop_reason(self.raw_reason, called_tools=self.called_tools),
            raw_reason=self.raw_reason,
            message=self.builder.message(),
            usage=self.usage,
            model=self.model_version or requested_model,
        )


_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _retry_after(exc: genai_errors.APIError) -> float | None:
    """Retry-After from the headers, else the RetryInfo detail Google puts in the error body."""
    headers = getattr(exc.response, "headers", None)
    if headers is not None:
        seconds = retry_after_seconds({str(k).lower(): v for k, v in dict(headers).items()})
        if seconds is not None:
            return seconds
    body = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else None
    details = body.get("details") if isinstance(body, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
