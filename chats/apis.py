"""REST views for chats and their message history."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_site.pagination import paginated_response

from .models import Role
from .selectors import chat_get, chat_list, message_list
from .services import chat_create, chat_delete, chat_update


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

    def get_mcp_servers(self, chat) -> list[str]:  # type: ignore[no-untyped-def]
        return [server.name for server in chat.mcp_servers.all()]


class ChatInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    provider = serializers.SlugField(max_length=50, required=False, allow_null=True, default=None)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    system_prompt_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    mcp_servers = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, default=list, max_length=100
    )

    class Meta:
        ref_name = "ChatInput"


class ChatListCreateApi(APIView):
    @extend_schema(responses=ChatOutputSerializer(many=True), operation_id="chats_list")
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=chat_list(user=request.user), serializer_class=ChatOutputSerializer, request=request, view=self
        )

    @extend_schema(request=ChatInputSerializer, responses={201: ChatOutputSerializer}, operation_id="chats_create")
    def post(self, request: Request) -> Response:
        serializer = ChatInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        chat = chat_create(owner=request.user, **serializer.validated_data)
        return Response(
            ChatOutputSerializer(chat_get(chat_id=chat.pk, user=request.user)).data, status=status.HTTP_201_CREATED
        )


class ChatDetailApi(APIView):
    @extend_schema(responses=ChatOutputSerializer, operation_id="chats_retrieve")
    def get(self, request: Request, chat_id: int) -> Response:
        return Response(ChatOutputSerializer(chat_get(chat_id=chat_id, user=request.user)).data)

    @extend_schema(
        request=ChatInputSerializer(partial=True), responses=ChatOutputSerializer, operation_id="chats_update"
    )
    def patch(self, request: Request, chat_id: int) -> Response:
        chat = chat_get(chat_id=chat_id, user=request.user)
        serializer = ChatInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        chat_update(chat=chat, data=serializer.validated_data)
        return Response(ChatOutputSerializer(chat_get(chat_id=chat_id, user=request.user)).data)

    @extend_schema(responses={204: None}, operation_id="chats_destroy")
    def delete(self, request: Request, chat_id: int) -> Response:
        chat_delete(chat=chat_get(chat_id=chat_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ToolExecutionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tool_call_id = serializers.CharField()
    server = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.JSONField()
    result = serializers.JSONField()
    is_error = serializers.BooleanField()
    duration_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ToolExecution"


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Role.choices)
    content = serializers.JSONField(help_text="Content blocks: text, tool_call, tool_result, thinking.")
    provider = serializers.CharField()
    model = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    tool_executions = ToolExecutionOutputSerializer(many=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Message"


class MessageListApi(APIView):
    @extend_schema(responses=MessageOutputSerializer(many=True), operation_id="chats_messages_list")
    def get(self, request: Request, chat_id: int) -> Response:
        chat = chat_get(chat_id=chat_id, user=request.user)
        return paginated_response(
            queryset=message_list(chat=chat), serializer_class=MessageOutputSerializer, request=request, view=self
        )
