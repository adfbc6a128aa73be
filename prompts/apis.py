"""REST views for the prompt library."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.requests import AuthenticatedRequest
from platform_site.fields import StrictCharField
from platform_site.pagination import PageNumberPagination, paginated_response
from platform_site.schema import error_responses

from .models import SystemPrompt, Visibility
from .selectors import prompt_get, prompt_list
from .services import prompt_create, prompt_delete, prompt_update


class PromptOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    content = serializers.CharField()
    description = serializers.CharField()
    visibility = serializers.ChoiceField(choices=Visibility.choices)
    owner = serializers.CharField(source="owner.username")
    is_owner = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "SystemPrompt"

    def get_is_owner(self, prompt: SystemPrompt) -> bool:
        return prompt.owner_id == self.context["user"].pk


class PromptInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    content = StrictCharField(max_length=100_000)
    description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PRIVATE)

    class Meta:
        ref_name = "SystemPromptInput"


class PromptListCreateApi(APIView):
    pagination_class = PageNumberPagination

    @extend_schema(responses=PromptOutputSerializer(many=True), operation_id="prompts_list")
    def get(self, request: AuthenticatedRequest) -> Response:
        return paginated_response(
            queryset=prompt_list(user=request.user),
            serializer_class=PromptOutputSerializer,
            request=request,
            view=self,
            context={"user": request.user},
        )

    @extend_schema(
        request=PromptInputSerializer,
        responses={201: PromptOutputSerializer, **error_responses(409)},  # 409 duplicate_name
        operation_id="prompts_create",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = PromptInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prompt = prompt_create(owner=request.user, **serializer.validated_data)
        return Response(
            PromptOutputSerializer(prompt, context={"user": request.user}).data, status=status.HTTP_201_CREATED
        )


class PromptDetailApi(APIView):
    @extend_schema(responses=PromptOutputSerializer, operation_id="prompts_retrieve")
    def get(self, request: AuthenticatedRequest, prompt_id: int) -> Response:
        prompt = prompt_get(prompt_id=prompt_id, user=request.user)
        return Response(PromptOutputSerializer(prompt, context={"user": request.user}).data)

    @extend_schema(
        request=PromptInputSerializer(partial=True),
        responses={200: PromptOutputSerializer, **error_responses(409)},  # 409 duplicate_name
        operation_id="prompts_update",
    )
    def patch(self, request: AuthenticatedRequest, prompt_id: int) -> Response:
        prompt = prompt_get(prompt_id=prompt_id, user=request.user)
        serializer = PromptInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        prompt = prompt_update(prompt=prompt, user=request.user, data=serializer.validated_data)
        return Response(PromptOutputSerializer(prompt, context={"user": request.user}).data)

    @extend_schema(responses={204: None}, operation_id="prompts_destroy")
    def delete(self, request: AuthenticatedRequest, prompt_id: int) -> Response:
        prompt_delete(prompt=prompt_get(prompt_id=prompt_id, user=request.user), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
