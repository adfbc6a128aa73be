"""REST views for chats and their message history."""

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import renderers, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from accounts.requests import AuthenticatedRequest
from platform_site.async_views import AsyncApiView
from platform_site.db import run_db
from platform_site.exceptions import Conflict, ValidationFailed
from platform_site.fields import (
    SharedFieldsSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSlugField,
)
from platform_site.pagination import PageNumberPagination, paginated_response
from platform_site.schema import ERROR_DESCRIPTIONS, NOT_BLANK_PATTERN, ErrorSerializer, error_responses
from providers.types import GenerationOptions

from .events import (
    ElicitationRequired,
    ErrorEvent,
    Event,
    TextDelta,
    ToolApprovalRequired,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
)
from .models import Chat, Role, ToolApproval
from .selectors import chat_get, chat_list, message_list
from .services import chat_create, chat_delete, chat_update
from .services.turns import (
    PreparedTurn,
    TurnRequest,
    approval_list,
    approval_submit,
    parse_decision,
    turn_cancel,
    turn_prepare,
    turn_start,
)
from .services.turns.attachments import Attachment
from .services.turns.interactions import elicitation_submit, parse_elicitation_answer


class ChatOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    provider = serializers.CharField(source="provider.name", allow_null=True)
    model = serializers.CharField()
    system_prompt_id = serializers.IntegerField(allow_null=True)
    mcp_servers = serializers.SerializerMethodField()
    message_count = serializers.IntegerField(default=0)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Chat"

    def get_mcp_servers(self, chat: Chat) -> list[str]:
        return [server.name for server in chat.mcp_servers.all()]


class ChatInputSerializer(serializers.Serializer):
    title = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    provider = StrictSlugField(max_length=50, required=False, allow_null=True, default=None)
    model = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    system_prompt_id = StrictIntegerField(required=False, allow_null=True, default=None)
    mcp_servers = serializers.ListField(
        child=StrictCharField(max_length=40), required=False, default=list, max_length=100
    )

    class Meta:
        ref_name = "ChatInput"


class ChatListCreateApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(responses=ChatOutputSerializer(many=True), operation_id="chats_list")
    def get(self, request: AuthenticatedRequest) -> Response:
        return paginated_response(
            queryset=chat_list(user=request.user), serializer_class=ChatOutputSerializer, request=request, view=self
        )

    @extend_schema(request=ChatInputSerializer, responses={201: ChatOutputSerializer}, operation_id="chats_create")
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = ChatInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        chat = chat_create(owner=request.user, **serializer.validated_data)
        return Response(
            ChatOutputSerializer(chat_get(chat_id=chat.pk, user=request.user)).data, status=status.HTTP_201_CREATED
        )


class ChatDetailApi(APIView):
    @extend_schema(responses=ChatOutputSerializer, operation_id="chats_retrieve")
    def get(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        return Response(ChatOutputSerializer(chat_get(chat_id=chat_id, user=request.user)).data)

    @extend_schema(
        request=ChatInputSerializer(partial=True), responses=ChatOutputSerializer, operation_id="chats_update"
    )
    def patch(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        chat = chat_get(chat_id=chat_id, user=request.user)
        serializer = ChatInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        chat_update(chat=chat, data=serializer.validated_data)
        return Response(ChatOutputSerializer(chat_get(chat_id=chat_id, user=request.user)).data)

    @extend_schema(responses={204: None}, operation_id="chats_destroy")
    def delete(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        chat_delete(chat=chat_get(chat_id=chat_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApprovalRecordSerializer(serializers.Serializer):
    policy = serializers.ChoiceField(choices=["allow", "ask", "deny"])
    decision = serializers.ChoiceField(choices=["approved", "denied", "expired", "cancelled"])
    auto = serializers.BooleanField(help_text="Decided by a policy, a remembered approval or the timeout.")
    decided_by = serializers.IntegerField(allow_null=True, help_text="The user who decided; null when auto.")
    decided_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "ToolApprovalRecord"


class ToolExecutionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tool_call_id = serializers.CharField()
    server = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.JSONField()
    result = serializers.JSONField()
    round = serializers.IntegerField()
    is_error = serializers.BooleanField()
    duration_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    approval = serializers.SerializerMethodField(help_text="Whether and why the call ran; null for older rows.")

    class Meta:
        ref_name = "ToolExecution"

    @extend_schema_field(ApprovalRecordSerializer(allow_null=True))
    def get_approval(self, execution: Any) -> dict[str, Any] | None:
        if not execution.approval_decision:
            return None
        return {
            "policy": execution.approval_policy,
            "decision": execution.approval_decision,
            "auto": execution.approval_auto,
            "decided_by": execution.approval_by_id,
            "decided_at": execution.approval_at,
        }


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Role.choices)
    content = serializers.JSONField(help_text="Content blocks: text, tool_call, tool_result, thinking.")
    provider = serializers.CharField()
    model = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    finish_reason = serializers.CharField(
        help_text="end, tool_calls, length, refused; error, cancelled or round_limit for a reply cut short."
    )
    cost = serializers.DecimalField(max_digits=14, decimal_places=8, help_text="What this reply cost, in USD.")
    error_code = serializers.CharField(help_text="A failed reply (finish_reason error): the error's code; else empty.")
    error_message = serializers.CharField(help_text="A failed reply: why it failed, as shown live; else empty.")
    tool_executions = ToolExecutionOutputSerializer(many=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Message"


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets clients ask for ``Accept: text/event-stream``; errors before the stream become one error event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return sse_frame("error", data).encode()


def sse_frame(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n"


MAX_ATTACHMENTS = 10


class TurnAttachmentSerializer(serializers.Serializer):
    server = StrictCharField(max_length=40, help_text="An MCP server the caller may use.")
    uri = StrictCharField(max_length=2000, help_text="One of its resources (a listed URI or a template's).")

    class Meta:
        ref_name = "TurnAttachment"


class TurnInputSerializer(SharedFieldsSerializer):
    # Blank and over-long messages are the turn's own 400s (empty_message, message_too_long), for every interface.
    message = StrictCharField(
        allow_blank=True,
        trim_whitespace=False,
        schema_pattern=NOT_BLANK_PATTERN,
        help_text="Not blank; at most `CHAT_MAX_MESSAGE_CHARS` (100,000 by default) characters.",
    )
    provider = StrictSlugField(max_length=50, required=False, allow_null=True)
    model = StrictCharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    system_prompt_id = StrictIntegerField(required=False, allow_null=True)
    variables = serializers.DictField(child=StrictCharField(allow_blank=True), required=False, default=dict)
    mcp_servers = serializers.ListField(
        child=StrictCharField(max_length=40), required=False, allow_null=True, default=None, max_length=100
    )
    tools = StrictBooleanField(required=False, default=True)
    stream = StrictBooleanField(required=False, default=False)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    # Bounded like max_tokens: far above any model's budget (the provider refuses what its model can't take),
    # and an unbounded integer went to the provider as sent.
    thinking_budget = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)
    attachments = serializers.ListField(
        child=TurnAttachmentSerializer(),
        required=False,
        default=list,
        max_length=MAX_ATTACHMENTS,
        help_text="MCP resources read as the caller and given to the model with the message (text; binary "
        "contents as a note). At most `CHAT_MAX_ATTACHMENT_CHARS` (200,000 by default) characters in all: "
        "else 400 `attachment_too_large`; one that cannot be read is 400 `attachment_unreadable`.",
    )

    class Meta:
        ref_name = "TurnInput"

    def to_turn(self) -> TurnRequest:
        data = self.validated_data
        return TurnRequest(
            message=data["message"],
            provider=data.get("provider") or None,
            model=data.get("model") or None,
            system_prompt_id=data.get("system_prompt_id"),
            variables=data["variables"],
            mcp_servers=data["mcp_servers"],
            tools=data["tools"],
            attachments=[Attachment(server=item["server"], uri=item["uri"]) for item in data["attachments"]],
            options=GenerationOptions(
                max_tokens=data.get("max_tokens"),
                temperature=data.get("temperature"),
                thinking_budget=data.get("thinking_budget"),
            ),
        )


class OneShotInputSerializer(TurnInputSerializer):
    chat_id = StrictIntegerField(required=False, allow_null=True)

    class Meta:
        ref_name = "ChatOneShotInput"


class ToolExecutionSummarySerializer(serializers.Serializer):
    round = serializers.IntegerField()
    id = serializers.CharField()
    name = serializers.CharField()
    server = serializers.CharField()
    arguments = serializers.DictField()
    is_error = serializers.BooleanField()
    content = serializers.CharField()
    duration_ms = serializers.IntegerField()

    class Meta:
        ref_name = "TurnToolExecution"


class TurnOutputSerializer(serializers.Serializer):
    chat_id = serializers.IntegerField()
    message_id = serializers.IntegerField(allow_null=True, help_text="The final assistant message.")
    response = serializers.CharField(help_text="The final text.")
    tool_executions = ToolExecutionSummarySerializer(many=True)
    usage = serializers.DictField()
    finish_reason = serializers.CharField()
    success = serializers.BooleanField()
    error = serializers.DictField(allow_null=True)

    class Meta:
        ref_name = "TurnResult"


ERROR_STATUS = {
    "provider_rate_limited": 429,
    "provider_unavailable": 503,
    "provider_timeout": 504,
    "storage_failed": 503,  # the body still carries the reply's text
}


def turn_summary(events: list[Event]) -> tuple[int, dict[str, Any]]:
    """The JSON answer for a finished turn, and its HTTP status (an upstream failure is not a 200)."""
    done = events[-1]
    assert isinstance(done, TurnDone)
    final_round = max((e.round for e in events if isinstance(e, TextDelta)), default=0)
    finished = {e.id: e for e in events if isinstance(e, ToolCallFinished)}
    # In the order the model made the calls (they finish in any order).
    executions = [
        {
            "round": start.round,
            "id": start.id,
            "name": start.name,
            "server": start.server,
            "arguments": start.arguments,
            "is_error": finished[start.id].is_error,
            "content": finished[start.id].content,
            "duration_ms": finished[start.id].duration_ms,
        }
        for start in events
        if isinstance(start, ToolCallStarted) and start.id in finished
    ]
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    body = {
        "chat_id": done.chat_id,
        "message_id": done.assistant_message_id,
        "response": "".join(e.text for e in events if isinstance(e, TextDelta) and e.round == final_round),
        "tool_executions": executions,
        "usage": {"input_tokens": done.input_tokens, "output_tokens": done.output_tokens, "cost": f"{done.cost:.8f}"},
        "finish_reason": done.finish_reason,
        "success": done.success,
        "error": {"code": errors[-1].code, "message": errors[-1].message} if errors else None,
    }
    status_code = 200
    if errors and not done.success and done.finish_reason == "error":
        status_code = ERROR_STATUS.get(errors[-1].code, 502)
    return status_code, body


async def turn_response(request: Request, prepared: PreparedTurn, stream: bool) -> HttpResponseBase:
    prepared.streamed = stream  # a JSON answer: the model's whole reply at once
    handle = await turn_start(prepared)
    if not stream:
        events, asked = await handle.result_or_approvals()
        if asked:
            # The turn goes on in the background once decided (or answered); the chat's messages show its end.
            approvals = [event.to_dict() for event in asked if isinstance(event, ToolApprovalRequired)]
            questions = [event.to_dict() for event in asked if isinstance(event, ElicitationRequired)]
            body = {
                "status": "awaiting_approval" if approvals else "awaiting_input",
                "chat_id": handle.chat_id,
                "approvals": approvals,
                "elicitations": questions,
            }
            return Response(body, status=status.HTTP_202_ACCEPTED)
        status_code, body = turn_summary(events)
        return Response(body, status=status_code)

    async def frames() -> AsyncIterator[str]:
        # A client that disconnects stops this generator, not the turn: its task finishes and stores the reply.
        yield ": stream open\n\n"
        async for event in handle.events(heartbeat=settings.CHAT_SSE_HEARTBEAT_SECONDS):
            yield ": keep-alive\n\n" if event is None else sse_frame(event.type, event.to_dict())

    response = StreamingHttpResponse(frames(), content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _wants_stream(request: Request, data: dict[str, Any]) -> bool:
    # ?format=sse picks the SSE renderer too: then the answer must be the stream, not the JSON body in one frame.
    return (
        bool(data.get("stream"))
        or "text/event-stream" in request.headers.get("Accept", "")
        or isinstance(request.accepted_renderer, EventStreamRenderer)
    )


TURN_EVENT_TYPES = sorted(event.model_fields["type"].default for event in get_args(Event))


class TurnEventSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=TURN_EVENT_TYPES, help_text="The engine event's type.")
    # A declared field: the serializer metaclass takes it off the class, so Serializer.data stands.
    data = serializers.CharField(help_text='The event as a JSON object (see the README\'s "A turn").')  # type: ignore[assignment]

    class Meta:
        ref_name = "TurnEvent"


class ApprovalRequestSerializer(serializers.Serializer):
    approval_id = serializers.UUIDField()
    tool_call_id = serializers.CharField()
    server = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.DictField()
    expires_at = serializers.DateTimeField()
    round = serializers.IntegerField()
    type = serializers.CharField(default="tool_approval_required")

    class Meta:
        ref_name = "ToolApprovalRequired"


class ElicitationRequestSerializer(serializers.Serializer):
    elicitation_id = serializers.UUIDField()
    tool_call_id = serializers.CharField()
    server = serializers.CharField()
    mode = serializers.ChoiceField(choices=["form", "url"])
    message = serializers.CharField()
    requested_schema = serializers.DictField(help_text="form mode: the fields to fill (a flat JSON Schema object).")
    url = serializers.CharField(allow_null=True, help_text="url mode: the page to open.")
    expires_at = serializers.DateTimeField()
    round = serializers.IntegerField()
    type = serializers.CharField(default="elicitation_required")

    class Meta:
        ref_name = "ElicitationRequired"


class AwaitingApprovalSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["awaiting_approval", "awaiting_input"],
        help_text="`awaiting_input`: only questions of a tool's server (elicitations) wait.",
    )
    chat_id = serializers.IntegerField()
    approvals = ApprovalRequestSerializer(many=True)
    elicitations = ElicitationRequestSerializer(many=True)

    class Meta:
        ref_name = "TurnAwaitingApproval"


def _turn_responses() -> dict[Any, Any]:
    """A turn's answers: JSON, or the event stream; upstream failures keep the JSON answer's body."""
    json_type, sse_type = "application/json", EventStreamRenderer.media_type
    # 429 is the caller's own rate or token limit (an Error) or the provider's, after retries (a TurnResult).
    result_or_error = PolymorphicProxySerializer(
        component_name="TurnFailure", serializers=[TurnOutputSerializer, ErrorSerializer], resource_type_field_name=None
    )
    upstream = "The provider failed after retries (`provider_unavailable`, `provider_timeout`, ...) or the reply "
    upstream += "could not be stored (`storage_failed`, 503): the body says what was kept."
    return {
        (200, json_type): TurnOutputSerializer,
        (200, sse_type): TurnEventSerializer,
        (202, json_type): OpenApiResponse(
            AwaitingApprovalSerializer,
            description="A tool call waits for a person's decision (policy `ask`): decide with "
            "`POST /api/chats/{id}/approvals/{approval_id}`; or its server asks the user something: answer with "
            "`POST /api/chats/{id}/elicitations/{elicitation_id}`. The turn then goes on in the background.",
        ),
        # Errors before a stream starts are one `error` event (platform_site.schema documents them so).
        (429, json_type): OpenApiResponse(result_or_error, description=ERROR_DESCRIPTIONS[429]),
        (429, sse_type): OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[429]),
        **{
            (status, json_type): OpenApiResponse(TurnOutputSerializer, description=upstream)
            for status in (502, 503, 504)
        },
        **error_responses(409),  # turn_in_progress
    }


class ChatMessagesApi(AsyncApiView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]
    pagination_class = PageNumberPagination

    def get_renderers(self) -> list[renderers.BaseRenderer]:
        # The history is JSON only: only a turn (POST) streams.
        if getattr(getattr(self, "request", None), "method", None) == "GET":
            return [renderers.JSONRenderer()]
        return super().get_renderers()

    @extend_schema(responses=MessageOutputSerializer(many=True), operation_id="chats_messages_list")
    async def get(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        def page() -> Response:
            chat = chat_get(chat_id=chat_id, user=request.user)
            return paginated_response(
                queryset=message_list(chat=chat), serializer_class=MessageOutputSerializer, request=request, view=self
            )

        return await run_db(page)

    @extend_schema(
        request=TurnInputSerializer,
        responses=_turn_responses(),
        operation_id="chats_messages_create",
        description="One turn: the model answers, calling MCP tools as often as it needs. JSON by default; "
        "Server-Sent Events (one event per engine event) with `stream: true` or `Accept: text/event-stream`.",
    )
    async def post(self, request: AuthenticatedRequest, chat_id: int) -> HttpResponseBase:
        serializer = TurnInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prepared = await turn_prepare(
            user=request.user, chat_id=chat_id, request=serializer.to_turn(), api_key=_api_key(request)
        )
        return await turn_response(request, prepared, _wants_stream(request, serializer.validated_data))


class ChatOneShotApi(AsyncApiView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        request=OneShotInputSerializer,
        responses=_turn_responses(),
        operation_id="chat_one_shot",
        description="The one-shot form: creates the chat when no chat_id is given.",
    )
    async def post(self, request: AuthenticatedRequest) -> HttpResponseBase:
        serializer = OneShotInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prepared = await turn_prepare(
            user=request.user,
            chat_id=serializer.validated_data.get("chat_id"),
            request=serializer.to_turn(),
            api_key=_api_key(request),
        )
        return await turn_response(request, prepared, _wants_stream(request, serializer.validated_data))


class CancelOutputSerializer(serializers.Serializer):
    cancelled = serializers.BooleanField(help_text="True when a running turn was asked to stop.")

    class Meta:
        ref_name = "TurnCancel"


class ChatCancelApi(AsyncApiView):
    @extend_schema(
        request=None,
        responses={202: CancelOutputSerializer, **error_responses(409, 503)},  # 409 no_turn_in_progress
        operation_id="chats_cancel",
        description="Stop the chat's running turn, on whichever worker runs it; what it produced is kept. "
        "409 `no_turn_in_progress` when none is running; 503 `service_unavailable` (with `Retry-After`) when "
        "another worker runs it and Redis, which carries the cancel there, is unreachable.",
    )
    async def post(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        if not await turn_cancel(chat_id=chat_id, user=request.user):
            raise Conflict("No turn is running in this chat.", code="no_turn_in_progress")
        return Response({"cancelled": True}, status=status.HTTP_202_ACCEPTED)


def _api_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


class ApprovalOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The approval_id.")
    tool_call_id = serializers.CharField()
    round = serializers.IntegerField()
    server = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.JSONField()
    status = serializers.ChoiceField(choices=ToolApproval.Status.choices)
    remember = serializers.BooleanField(help_text="Approved for the rest of the chat.")
    decided_by = serializers.IntegerField(source="decided_by_id", allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ToolApproval"


class DecisionInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "deny"])
    remember = serializers.ChoiceField(
        choices=["chat"], required=False, allow_null=True, help_text="`chat`: allow this tool for the rest of the chat."
    )

    class Meta:
        ref_name = "ToolApprovalDecision"


class ChatApprovalListApi(AsyncApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=["pending", "all"],
                description="`pending` (the default): the calls still waiting; `all`: every decision too.",
            )
        ],
        responses={200: ApprovalOutputSerializer(many=True), **error_responses(400)},
        operation_id="chats_approvals_list",
    )
    async def get(self, request: AuthenticatedRequest, chat_id: int) -> Response:
        which = request.query_params.get("status", "pending")
        if which not in ("pending", "all"):
            raise ValidationFailed(
                "status must be pending or all.", code="invalid_status", details={"status": ["pending or all"]}
            )
        approvals = await run_db(approval_list, chat_id=chat_id, user=request.user, pending_only=which == "pending")
        return Response(ApprovalOutputSerializer(approvals, many=True).data)


class ChatApprovalDecideApi(AsyncApiView):
    @extend_schema(
        request=DecisionInputSerializer,
        responses={200: ApprovalOutputSerializer, **error_responses(409)},  # approval_not_pending
        operation_id="chats_approvals_decide",
        description="Approve or deny a tool call that waits (policy `ask`), on whichever worker runs its turn. "
        "409 `approval_not_pending` once it was decided, expired or cancelled.",
    )
    async def post(self, request: AuthenticatedRequest, chat_id: int, approval_id: str) -> Response:
        _, approve, remember = parse_decision(request.data)
        approval = await approval_submit(
            user=request.user, approval_id=approval_id, approve=approve, remember=remember, chat_id=chat_id
        )
        return Response(ApprovalOutputSerializer(approval).data)


class ElicitationAnswerInputSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["accept", "decline", "cancel"])
    content = serializers.DictField(
        required=False, allow_null=True, help_text="accept, form mode: the fields; left-out ones get their default."
    )

    class Meta:
        ref_name = "ElicitationAnswer"


class ElicitationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The elicitation_id.")
    tool_call_id = serializers.CharField()
    server = serializers.CharField()
    action = serializers.SerializerMethodField()
    content = serializers.SerializerMethodField()
    answered_at = serializers.DateTimeField(source="decided_at", allow_null=True)

    class Meta:
        ref_name = "ElicitationAnswered"

    def get_action(self, row: Any) -> str:
        return str((row.arguments.get("response") or {}).get("action", ""))

    def get_content(self, row: Any) -> dict[str, Any] | None:
        return (row.arguments.get("response") or {}).get("content")


class ChatElicitationAnswerApi(AsyncApiView):
    @extend_schema(
        request=ElicitationAnswerInputSerializer,
        responses={200: ElicitationOutputSerializer, **error_responses(409)},  # elicitation_not_pending
        operation_id="chats_elicitations_answer",
        description="Answer a question a tool's server asks the user (elicitation), on whichever worker runs its "
        "turn. `accept` checks `content` against the form (400 `invalid_elicitation_content` naming each field) and "
        "fills in defaults; 409 `elicitation_not_pending` once it was answered, expired or cancelled.",
    )
    async def post(self, request: AuthenticatedRequest, chat_id: int, elicitation_id: str) -> Response:
        _, action, content = parse_elicitation_answer(request.data)
        row = await elicitation_submit(
            user=request.user, elicitation_id=elicitation_id, action=action, content=content, chat_id=chat_id
        )
        return Response(ElicitationOutputSerializer(row).data)
