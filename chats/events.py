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
    # Set (and text empty) when the provider signs the thinking block just streamed (Anthropic): clients that
    # replay the conversation (the /v1 fronts) need it; others may ignore it.
    signature: str | None = None


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


class ToolProgress(_Event):
    """A running call's progress, as its server reports it (at most a few a second per call)."""

    type: Literal["tool_progress"] = "tool_progress"
    tool_call_id: str
    progress: float
    total: float | None = None
    message: str | None = None


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


class SamplingRequested(_Event):
    """A call's server asks a model to think (``sampling/createMessage``); ``ask`` also sends an approval."""

    type: Literal["sampling_request"] = "sampling_request"
    tool_call_id: str
    server: str
    messages: list[dict[str, str]]  # [{"role", "text"}]
    system_prompt: str | None = None
    max_tokens: int


class SamplingResultEvent(_Event):
    """What the model answered the server; ``error`` (and no text) when the request was refused or failed."""

    type: Literal["sampling_result"] = "sampling_result"
    tool_call_id: str
    server: str
    model: str
    text: str
    stop_reason: str
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)


class ElicitationRequired(_Event):
    """A call's server asks the user: answer with the WebSocket frame ``elicitation`` or the REST endpoint.

    ``mode`` form: fill ``requested_schema``; url: open ``url``, then accept, decline or cancel.
    """

    type: Literal["elicitation_required"] = "elicitation_required"
    elicitation_id: str
    tool_call_id: str
    server: str
    mode: str
    message: str
    requested_schema: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None
    expires_at: datetime
    round: int


class ElicitationResolved(_Event):
    type: Literal["elicitation_resolved"] = "elicitation_resolved"
    elicitation_id: str
    tool_call_id: str
    action: str  # accept, decline or cancel
    auto: bool  # the timeout or a cancelled turn, not the user


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


class ClientToolCalls(_Event):
    """The model called tools the client runs itself (the /v1 fronts' ``tools``): the turn ends here, and the
    client sends the results with its next request. Only a turn given client tools emits it."""

    type: Literal["client_tool_calls"] = "client_tool_calls"
    calls: list[dict[str, Any]]  # {id, name, arguments}
    round: int


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
    | ToolProgress
    | ToolApprovalRequired
    | ToolApprovalDecided
    | SamplingRequested
    | SamplingResultEvent
    | ElicitationRequired
    | ElicitationResolved
    | MessageDone
    | UsageReport
    | ClientToolCalls
    | ErrorEvent
    | TurnDone
)
