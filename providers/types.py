"""Canonical, provider-neutral data: conversation, tools, usage and stream events.

Every adapter converts these to its wire format on the way out and back on the
way in, so history written by any provider replays on any other. Opaque data a
provider needs replayed (Anthropic thinking signatures, Gemini thought
signatures) rides on the block in ``opaque`` together with ``origin`` (the
provider kind that made it); adapters send it back only when ``origin`` is
their own kind.
"""

import base64
import binascii
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

MessageRole = Literal["user", "assistant", "tool"]


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    origin: str | None = None
    opaque: dict[str, Any] | None = None


class TextBlock(_Block):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(_Block):
    type: Literal["thinking"] = "thinking"
    text: str
    # Anthropic's signature (or the encrypted data of a redacted block); kept in ``opaque`` for other kinds.
    signature: str | None = None
    redacted: bool = False


class ToolCallBlock(_Block):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    # Set (and arguments left empty) when the model sent arguments that are not a JSON object.
    invalid_arguments: str | None = None


class ToolResultBlock(_Block):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    # The name of the tool that was called: Gemini and Ollama key results by name, not id.
    name: str = ""
    content: str = ""
    is_error: bool = False


ImageMediaType = Literal["image/png", "image/jpeg", "image/gif", "image/webp"]
_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)


class ImageBlock(_Block):
    """An image in a user message: base64 ``data`` with its ``media_type``, or an http(s) ``url``.

    A ``data:`` URL given as ``url`` is taken apart into ``data`` and ``media_type``, so a url is always
    remote. Adapters send it in their wire's terms; a provider without vision sees a short placeholder.
    """

    type: Literal["image"] = "image"
    data: str | None = None
    media_type: ImageMediaType | None = None
    url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_data_url(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("url"), str) and values["url"].startswith("data:"):
            match = _DATA_URL.match(values["url"])
            if match is None:
                raise ValueError("An image data: URL must be base64, e.g. data:image/png;base64,....")
            media_type = match["media_type"].lower().replace("image/jpg", "image/jpeg")
            values = {**values, "url": None, "data": match["data"], "media_type": media_type}
        return values

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.data is None) == (self.url is None):
            raise ValueError("An image needs either base64 data (with its media_type) or a url, not both.")
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise ValueError("An image url must be http(s) or a data: URL.")
        if self.data is not None:
            if self.media_type is None:
                raise ValueError("An image given as data needs its media_type.")
            try:
                base64.b64decode(self.data, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("Image data is not valid base64.") from None
        return self


ContentBlock = Annotated[
    TextBlock | ThinkingBlock | ToolCallBlock | ToolResultBlock | ImageBlock, Field(discriminator="type")
]


class Message(BaseModel):
    """One conversation turn. ``tool`` messages hold only ToolResultBlocks; system prompts travel apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: MessageRole
    content: list[ContentBlock]

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    @property
    def tool_calls(self) -> list[ToolCallBlock]:
        return [block for block in self.content if isinstance(block, ToolCallBlock)]

    @property
    def images(self) -> list[ImageBlock]:
        return [block for block in self.content if isinstance(block, ImageBlock)]

    @classmethod
    def user(cls, text: str) -> "Message":
        return cls(role="user", content=[TextBlock(text=text)])


MESSAGE_LIST = TypeAdapter(list[Message])
CONTENT_BLOCKS = TypeAdapter(list[ContentBlock])


class ToolSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(BaseModel):
    """Token counts of one provider call, normalised.

    ``input_tokens`` counts every prompt token, cached ones included;
    ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of it that hit
    or filled a cache. ``output_tokens`` counts everything generated, reasoning
    included; ``reasoning_tokens`` is that part of it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})


StopReason = Literal["end", "tool_calls", "length", "refused"]


class ToolChoice(BaseModel):
    """Whether the model must call a tool: ``auto`` (it decides), ``none``, ``required`` (some tool), or
    ``tool`` (the one named)."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None

    @model_validator(mode="after")
    def _name_for_tool(self) -> Self:
        if (self.mode == "tool") != bool(self.name):
            raise ValueError("tool_choice names a tool exactly when its mode is 'tool'.")
        return self


ResponseFormatType = Literal["text", "json_object", "json_schema"]


class GenerationOptions(BaseModel):
    """What a caller may ask of one generation. An adapter sends each option in its wire's terms; what its
    provider cannot honour, its ``unsupported_options`` lists before any call (and the adapter leaves out)."""

    model_config = ConfigDict(frozen=True)

    max_tokens: int | None = None
    temperature: float | None = None
    # Tokens the model may spend thinking (Anthropic extended thinking, Gemini thinking budget); None = off.
    thinking_budget: int | None = None
    stop: list[str] | None = None
    top_p: float | None = None
    seed: int | None = None
    # OpenAI's shape: {"type": "text"} | {"type": "json_object"} | {"type": "json_schema", "json_schema": {...}}
    response_format: dict[str, Any] | None = None
    tool_choice: ToolChoice | None = None

    @field_validator("response_format")
    @classmethod
    def _response_format_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        kind = value.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'.")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise ValueError("response_format.json_schema must be an object whose schema is a JSON Schema.")
        return value

    @property
    def response_format_type(self) -> ResponseFormatType | None:
        """None, or the kind of output asked for; "text" is the default every provider gives anyway."""
        return self.response_format["type"] if self.response_format else None

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of a ``json_schema`` response format (an object with no schema: any JSON object)."""
        if self.response_format_type != "json_schema":
            return None
        assert self.response_format is not None
        schema = self.response_format["json_schema"].get("schema")
        return schema if schema is not None else {"type": "object"}


# --- stream events --------------------------------------------------------------


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    text: str
    # Anthropic's signature of the thinking block just streamed (its text empty), sent as the block ends.
    signature: str | None = None


class ToolCallEvent(BaseModel):
    """A complete tool call, arguments parsed; emitted once the provider has sent all of it."""

    type: Literal["tool_call"] = "tool_call"
    call: ToolCallBlock


class UsageEvent(BaseModel):
    type: Literal["usage"] = "usage"
    usage: Usage


class FinishEvent(BaseModel):
    """Always the last event of a stream: why it stopped, and the whole assistant message in canonical form."""

    type: Literal["finish"] = "finish"
    reason: StopReason
    raw_reason: str | None = None
    message: Message
    usage: Usage
    model: str


StreamEvent = TextDelta | ThinkingDelta | ToolCallEvent | UsageEvent | FinishEvent


class Completion(BaseModel):
    message: Message
    usage: Usage
    stop_reason: StopReason
    raw_reason: str | None = None
    model: str
    latency_ms: int = 0


class ModelInfo(BaseModel):
    id: str
    display_name: str = ""
    context_window: int | None = None
    input_price_per_mtok: Decimal | None = None
    output_price_per_mtok: Decimal | None = None
    cached_input_price_per_mtok: Decimal | None = None


class Capabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    tools: bool = True
    streaming: bool = True
    thinking: bool = False
    vision: bool = False
    # Whether http(s) image URLs go to the provider as they are; if not, only inline image data can be sent.
    image_urls: bool = False


class HealthResult(BaseModel):
    status: Literal["ok", "error"]
    latency_ms: float | None = None
    error: str | None = None
    code: str | None = None
