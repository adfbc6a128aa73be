"""The chat engine's events: what every interface (REST JSON, SSE, WebSocket) turns into its own frames."""

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TurnStarted(_Event):
    type: Literal["turn_started"] = "turn_started"
    chat_id: int
    user_message_id: int
    provider: str
    model: str
    tools: list[str] = Field(default_factory=list)


class TextDelta(_Event):
    type: Literal["text_delta"] = "text_delta"
    text: str
    round: int


class ThinkingDelta(_Event):
    type: Literal["thinking_delta"] = "thinking_delta"
    text: str
    round: int


class ToolCallStarted(_Event):
    type: Literal["tool_call_started"] = "tool_call_started"
    id: str
    name: str
    server: str
    tool: str
    arguments: dict[str, Any]
    round: int


class ToolCallFinished(_Event):
    type: Literal["tool_call_finished"] = "tool_call_finished"
    id: str
    name: str
    server: str
    tool: str
    is_error: bool
    content: str
    duration_ms: int
    round: int


class ToolApprovalRequired(_Event):
    """A call waits for a human's yes: decide with the WebSocket frame ``approval`` or the REST endpoint."""

    type: Literal["tool_approval_required"] = "tool_approval_required"
    approval_id: str
    tool_call_id: str
    server: str
    tool: str
    arguments: dict[str, Any]
    expires_at: datetime
    round: int


class ToolApprovalDecided(_Event):
    type: Literal["tool_approval_decided"] = "tool_approval_decided"
    approval_id: str
    tool_call_id: str
    decision: str  # approved, denied, expired or cancelled
    auto: bool  # a policy, a remembered approval or the timeout decided, not a person
    remember: bool = False


class MessageDone(_Event):
    type: Literal["message_done"] = "message_done"
    message_id: int
    role: str
    round: int
    finish_reason: str = ""


class UsageReport(_Event):
    type: Literal["usage"] = "usage"
    round: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: Decimal
    latency_ms: int


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str
    message: str


class TurnDone(_Event):
    type: Literal["turn_done"] = "turn_done"
    chat_id: int | None  # None only when a turn that was to create its chat could not store it
    success: bool
    finish_reason: str
    message_ids: list[int]
    assistant_message_id: int | None
    input_tokens: int
    output_tokens: int
    cost: Decimal
    rounds: int


Event = (
    TurnStarted
    | TextDelta
    | ThinkingDelta
    | ToolCallStarted
    | ToolCallFinished
    | ToolApprovalRequired
    | ToolApprovalDecided
    | MessageDone
    | UsageReport
    | ErrorEvent
    | TurnDone
)
