"""Canonical, provider-neutral data: conversation, tools, usage and stream events.

Every adapter converts these to its wire format on the way out and back on the
way in, so history written by any provider replays on any other. Opaque data a
provider needs replayed (Anthropic thinking signatures, Gemini thought
signatures) rides on the block in ``opaque`` together with ``origin`` (the
provider kind that made it); adapters send it back only when ``origin`` is
their own kind.
"""

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

ProviderKindName = Literal["anthropic", "openai", "gemini", "ollama"]
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


ContentBlock = Annotated[TextBlock | ThinkingBlock | ToolCallBlock | ToolResultBlock, Field(discriminator="type")]


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


class GenerationOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_tokens: int | None = None
    temperature: float | None = None
    # Tokens the model may spend thinking (Anthropic extended thinking, Gemini thinking budget); None = off.
    thinking_budget: int | None = None
    stop: list[str] | None = None


# --- stream events --------------------------------------------------------------


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    text: str


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


class HealthResult(BaseModel):
    status: Literal["ok", "error"]
    latency_ms: float | None = None
    error: str | None = None
    code: str | None = None
