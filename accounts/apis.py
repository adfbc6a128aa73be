"""REST views for the caller's profile and API keys."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_site.fields import StrictCharField
from platform_site.pagination import PageNumberPagination, paginated_response

from .models import ApiKey, User
from .requests import AuthenticatedRequest
from .selectors import api_key_get, api_key_list
from .services import api_key_create, api_key_revoke
from .throttling import rate_limit_for


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        email = serializers.EmailField(allow_blank=True, help_text="Blank when the account has none.")
        first_name = serializers.CharField()
        last_name = serializers.CharField()
        is_staff = serializers.BooleanField()
        date_joined = serializers.DateTimeField()
        rate_limit_per_minute = serializers.SerializerMethodField()

        class Meta:
            ref_name = "Me"

        def get_rate_limit_per_minute(self, user: User) -> int:
            return rate_limit_for(user)

    @extend_schema(responses=OutputSerializer, operation_id="me_retrieve")
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(self.OutputSerializer(request.user).data)


class ApiKeyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.BooleanField()

    class Meta:
        ref_name = "ApiKey"


class ApiKeyListCreateApi(APIView):
    pagination_class = PageNumberPagination

    class InputSerializer(serializers.Serializer):
        name = StrictCharField(max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

        class Meta:
            ref_name = "ApiKeyCreateInput"

    class CreatedSerializer(ApiKeyOutputSerializer):
        key = serializers.CharField(help_text="The secret. Shown once; store it now.")

        class Meta:
            ref_name = "ApiKeyCreated"

    @extend_schema(responses=ApiKeyOutputSerializer(many=True), operation_id="keys_list")
    def get(self, request: AuthenticatedRequest) -> Response:
        return paginated_response(
            queryset=api_key_list(user=request.user),
            serializer_class=ApiKeyOutputSerializer,
            request=request,
            view=self,
        )

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer}, operation_id="keys_create")
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        creator = request.auth if isinstance(request.auth, ApiKey) else None  # None: a browser session
        # An omitted expiry inherits the creating key's; an explicit null asks for none (refused if it has one).
        expires_at = fields.get("expires_at", creator.expires_at if creator else None)
        issued = api_key_create(owner=request.user, name=fields["name"], expires_at=expires_at, created_with=creator)
        data = ApiKeyOutputSerializer(issued.api_key).data | {"key": issued.secret}
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    @extend_schema(responses={204: None}, operation_id="keys_revoke")
    def delete(self, request: AuthenticatedRequest, key_id: int) -> Response:
        api_key_revoke(api_key=api_key_get(key_id=key_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)
