"""The one interface every provider adapter implements, and what they share.

An adapter implements ``_stream``, ``_complete``, ``_list_models`` and
``map_error`` over its official async SDK client, and declares as class
attributes everything the rest of the platform needs to know about its kind
(its name, label, price source, default base URL, fallback key variables,
schema dialect): the registry, pricing and the admin read them from the class,
so a new provider is one adapter class plus one line in
``settings.PROVIDER_ADAPTERS``. This base class adds what must behave the same
everywhere: configuration checks, retries of transient errors with jittered
backoff honouring Retry-After (never once a stream has yielded), a
per-instance model-list cache, health checks, and the MessageBuilder that
assembles the canonical assistant message.
"""

import asyncio
import json
import logging
import random
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .errors import ProviderBadRequest, ProviderError, ProviderNotConfigured
from .schema import SchemaDialect
from .types import (
    Capabilities,
    Completion,
    ContentBlock,
    GenerationOptions,
    HealthResult,
    ImageBlock,
    Message,
    ModelInfo,
    StreamEvent,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolSpec,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 120.0
    max_retries: int = 2
    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0
    models_cache_seconds: float = 300.0


@dataclass(frozen=True)
class PriceSource:
    """Where pricing finds list prices for an adapter's models. An admin price on a model row always wins.

    ``genai_prices``: the provider's id in the genai-prices data ("anthropic", "openai", "google").
    ``free``: the models run locally and cost 0. Neither: only admin rows price them, else a call costs 0
    (logged once per model and process).
    """

    genai_prices: str | None = None
    free: bool = False


ADMIN_PRICES_ONLY = PriceSource()
FREE = PriceSource(free=True)


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    model: str
    tools: list[ToolSpec]
    system: str | None
    options: GenerationOptions


@dataclass(frozen=True)
class TokenCount:
    """A prompt's input tokens: the provider's own count, or (``estimated``) this module's estimate."""

    input_tokens: int
    estimated: bool


# The estimate when a provider cannot count: about 4 characters a token (English text and JSON alike), and an
# image as Anthropic prices a ~1.15 megapixel one.
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600


def estimate_tokens(*, messages: list[Message], tools: list[ToolSpec], system: str | None) -> int:
    """About how many input tokens the serialised conversation, system and tools make."""
    images = 0
    dumped: list[dict[str, Any]] = []
    for message in messages:
        blocks = []
        for block in message.content:
            if block.type == "image":
                images += 1
                continue
            blocks.append(block.model_dump(mode="json", exclude_none=True, exclude={"origin", "opaque"}))
        dumped.append({"role": message.role, "content": blocks})
    payload = {
        "system": system or "",
        "messages": dumped,
        "tools": [tool.model_dump(mode="json") for tool in tools],
    }
    chars = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return -(-chars // CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def new_tool_call_id() -> str:
    """An id for providers that give none (Gemini, Ollama): unique and valid on every wire."""
    return f"call_{secrets.token_hex(12)}"


def parse_arguments(raw: str | dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Tool-call arguments as an object, or ({}, raw) when they are not a JSON object."""
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}, str(raw)
    if not isinstance(value, dict):
        return {}, str(raw)
    return value, None


def image_placeholder(image: ImageBlock) -> str:
    """What a model that cannot be sent an image reads in its place, so stored history still replays."""
    if image.url:
        return f"[image: {image.url}]"
    return f"[image ({image.media_type}) not shown: this model cannot see images]"


class MessageBuilder:
    """Assembles the assistant message from streamed pieces, in the order they arrived."""

    def __init__(self) -> None:
        self.blocks: list[ContentBlock] = []
        self._text: list[str] = []
        self._text_meta: tuple[str | None, dict[str, Any] | None] = (None, None)
        self._thinking: list[str] = []
        self._thinking_meta: dict[str, Any] = {}

    def add_text(self, text: str, *, origin: str | None = None, opaque: dict[str, Any] | None = None) -> None:
        self._flush_thinking()
        if self._text and opaque:
            # A part with its own opaque data (e.g. a Gemini signature) starts a new block.
            self._flush_text()
        if not self._text:
            self._text_meta = (origin if opaque else None, opaque)
        self._text.append(text)

    def add_thinking(
        self,
        text: str = "",
        *,
        signature: str | None = None,
        redacted: bool = False,
        origin: str | None = None,
        opaque: dict[str, Any] | None = None,
    ) -> None:
        self._flush_text()
        self._thinking.append(text)
        if signature is not None:
            self._thinking_meta["signature"] = signature
        if redacted:
            self._thinking_meta["redacted"] = True
        if origin is not None:
            self._thinking_meta["origin"] = origin
        if opaque:
            self._thinking_meta["opaque"] = {**self._thinking_meta.get("opaque", {}), **opaque}

    def end_thinking(self) -> None:
        self._flush_thinking()

    def add_tool_call(self, call: ToolCallBlock) -> None:
        self._flush_text()
        self._flush_thinking()
        self.blocks.append(call)

    def _flush_text(self) -> None:
        if self._text:
            origin, opaque = self._text_meta
            self.blocks.append(TextBlock(text="".join(self._text), origin=origin, opaque=opaque))
            self._text, self._text_meta = [], (None, None)

    def _flush_thinking(self) -> None:
        if self._thinking or self._thinking_meta:
            self.blocks.append(ThinkingBlock(text="".join(self._thinking), **self._thinking_meta))
            self._thinking, self._thinking_meta = [], {}

    def message(self) -> Message:
        self._flush_text()
        self._flush_thinking()
        return Message(role="assistant", content=list(self.blocks))


class ProviderAdapter(ABC):
    # What the platform knows of a kind, all of it here: the registry, pricing, schema and admin read these.
    # The value stored in Provider.kind; registered kinds are the kinds of settings.PROVIDER_ADAPTERS.
    kind: ClassVar[str]
    # How the admin names the kind.
    label: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    price_source: ClassVar[PriceSource] = ADMIN_PRICES_ONLY
    # Used when neither the row nor the <KIND>_BASE_URL env var names one; None: the SDK's own default.
    default_base_url: ClassVar[str | None] = None
    # Env vars consulted for the key after the row's own api_key_env.
    fallback_key_env: ClassVar[tuple[str, ...]] = ()
    # The tool-schema dialect the API accepts (providers.schema.tool_schema_for).
    schema_dialect: ClassVar[SchemaDialect] = "json_schema"
    requires_api_key: ClassVar[bool] = True
    # A kind that names a family of servers rather than one service: each row must give its own base URL.
    requires_base_url: ClassVar[bool] = False

    @classmethod
    def base_url_env(cls) -> str | None:
        """The env var a row with a blank base URL falls back to; None for kinds whose rows must name one."""
        return None if cls.requires_base_url else f"{cls.kind.upper()}_BASE_URL"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._models: list[ModelInfo] | None = None
        self._models_at = 0.0

    @property
    def configured(self) -> bool:
        return self._configuration_problem() is None

    def _configuration_problem(self) -> str | None:
        if self.requires_base_url and not self.config.base_url:
            return f"No base URL: a provider of kind {self.kind!r} must name its server's."
        if self.requires_api_key and not self.config.api_key:
            return f"No API key: set the environment variable named on provider {self.config.name!r}."
        return None

    def _ensure_configured(self) -> None:
        problem = self._configuration_problem()
        if problem is not None:
            raise ProviderNotConfigured(problem, provider=self.config.name)

    # --- what a request may ask ---------------------------------------------------------

    @classmethod
    def unsupported_options(cls, options: GenerationOptions) -> list[str]:
        """Names of the fields set in ``options`` this provider cannot honour; empty when it honours them all.

        An interface asks this before any call, to refuse the request naming the parameter. An adapter given
        such options anyway sends what its wire can carry and leaves the rest out.
        """
        return []

    @classmethod
    def unsupported_content(cls, messages: Iterable[Message]) -> list[str]:
        """What in ``messages`` this provider cannot take: ``image`` (no vision), ``image_url`` (inline data only).

        For what a client sends now. Stored history replays on any provider regardless: the adapter puts a
        short text placeholder where an image cannot go.
        """
        images = [image for message in messages for image in message.images]
        if images and not cls.capabilities.vision:
            return ["image"]
        if any(image.url for image in images) and not cls.capabilities.image_urls:
            return ["image_url"]
        return []

    def _check_request(self, request: ChatRequest) -> None:
        """Refuse, before any call, a tool choice that no tool of the request can satisfy."""
        choice = request.options.tool_choice
        if choice is None or choice.mode in ("auto", "none"):
            return
        names = {spec.name for spec in request.tools}
        if not names:
            raise ProviderBadRequest(
                f"tool_choice {choice.mode!r} needs tools, and the request offers none.", provider=self.config.name
            )
        if choice.mode == "tool" and choice.name not in names:
            raise ProviderBadRequest(
                f"tool_choice names {choice.name!r}, which is not among the request's tools.",
                provider=self.config.name,
            )

    # --- what each adapter implements ------------------------------------------------

    @abstractmethod
    def _stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield events; the last one is a FinishEvent. Raise the SDK's own exceptions."""

    @abstractmethod
    async def _complete(self, request: ChatRequest) -> Completion:
        """One non-streaming call. Raise the SDK's own exceptions."""

    @abstractmethod
    async def _list_models(self) -> list[ModelInfo]:
        """The provider's own models endpoint."""

    @abstractmethod
    def map_error(self, exc: Exception) -> ProviderError:
        """Translate an SDK (or transport) exception into the shared hierarchy."""

    # --- the public interface --------------------------------------------------------

    async def stream(
        self,
        *,
        messages: list[Message],
        model: str,
        tools: list[ToolSpec] | None = None,
        system: str | None = None,
        options: GenerationOptions | None = None,
    ) -> AsyncIterator[StreamEvent]:
        self._ensure_configured()
        request = ChatRequest(messages, model, list(tools or []), system, options or GenerationOptions())
        self._check_request(request)
        attempt = 0
        while True:
            yielded = False
            try:
                async for event in self._stream(request):
                    yielded = True
                    yield event
                return
            except (GeneratorExit, asyncio.CancelledError):
                raise
            except Exception as exc:
                error = self._as_provider_error(exc)
                if yielded or not self._should_retry(error, attempt):
                    raise error from exc
            await asyncio.sleep(self._retry_delay(error, attempt))
            attempt += 1

    async def complete(
        self,
        *,
        messages: list[Message],
        model: str,
        tools: list[ToolSpec] | None = None,
        system: str | None = None,
        options: GenerationOptions | None = None,
    ) -> Completion:
        self._ensure_configured()
        request = ChatRequest(messages, model, list(tools or []), system, options or GenerationOptions())
        self._check_request(request)
        started = time.perf_counter()
        completion = await self._with_retries(lambda: self._complete(request))
        return completion.model_copy(update={"latency_ms": int((time.perf_counter() - started) * 1000)})

    async def count_tokens(
        self,
        *,
        messages: list[Message],
        model: str,
        tools: list[ToolSpec] | None = None,
        system: str | None = None,
    ) -> TokenCount:
        """The input tokens of this prompt. This default is an estimate (``estimate_tokens``); an adapter whose
        provider counts (Anthropic's ``messages.count_tokens``, Gemini's ``count_tokens``) overrides it."""
        estimate = estimate_tokens(messages=messages, tools=list(tools or []), system=system)
        return TokenCount(input_tokens=estimate, estimated=True)

    async def list_models(self) -> list[ModelInfo]:
        self._ensure_configured()
        fresh = time.monotonic() - self._models_at < self.config.models_cache_seconds
        if self._models is None or not fresh:
            self._models = await self._with_retries(self._list_models)
            self._models_at = time.monotonic()
        return self._models

    async def health(self) -> HealthResult:
        if self.requires_base_url and not self.config.base_url:
            return HealthResult(status="error", error="Not configured: no base URL.", code="provider_not_configured")
        if not self.configured:
            return HealthResult(
                status="error", error="Not configured: no API key in the environment.", code="provider_not_configured"
            )
        started = time.perf_counter()
        try:
            await self._list_models()
        except Exception as exc:
            error = self._as_provider_error(exc)
            return HealthResult(
                status="error",
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                error=error.message,
                code=error.code,
            )
        return HealthResult(status="ok", latency_ms=round((time.perf_counter() - started) * 1000, 2))

    # --- retries ---------------------------------------------------------------------

    def _as_provider_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        error = self.map_error(exc)
        if not error.provider:
            error.provider = self.config.name
        return error

    def _should_retry(self, error: ProviderError, attempt: int) -> bool:
        return error.retryable and attempt < self.config.max_retries

    def _retry_delay(self, error: ProviderError, attempt: int) -> float:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.config.retry_max_delay)
        backoff = min(self.config.retry_base_delay * (2**attempt), self.config.retry_max_delay)
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not security)

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = self._as_provider_error(exc)
                if not self._should_retry(error, attempt):
                    raise error from exc
                logger.info("retrying %s after %s (attempt %d)", self.config.name, error.code, attempt + 1)
            await asyncio.sleep(self._retry_delay(error, attempt))
            attempt += 1


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, when the server sent one."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
