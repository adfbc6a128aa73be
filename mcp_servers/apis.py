"""REST views of the MCP host: status, servers, tools, direct tool calls, resources and prompts.

Everything here talks to this worker's host (network or subprocess I/O), so the
views are async (platform_site.async_views). Configuration is never written through the API: servers
are configured by staff in admin, and no command line is ever accepted here. Why a server is down
(``last_error``), its command line and URL are shown to staff only, with the server's secrets redacted.
A server a user may not use does not exist for them here (404, absent from listings); staff see every one.
The one thing users write here is their own values of a server's ``user_vars`` (``.../credentials``): stored
encrypted, never read back by any endpoint.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response

from accounts.requests import AuthenticatedRequest
from platform_site.async_views import AsyncApiView as APIView
from platform_site.db import run_db
from platform_site.exceptions import ValidationFailed
from platform_site.fields import StrictCharField
from platform_site.schema import error_responses

from .credentials import MAX_VALUE_CHARS, credential_delete, credential_set, required_user_vars, user_var_states
from .models import LogLevel
from .oauth import oauth_flow_finish, oauth_flow_start, oauth_sign_out, oauth_state_for
from .results import ToolInfo
from .selectors import (
    ServerView,
    mcp_host_summary,
    mcp_prompt_get,
    mcp_prompts_list,
    mcp_resource_read,
    mcp_resources_list,
    mcp_server_for_credentials,
    mcp_server_for_oauth,
    mcp_server_log,
    mcp_server_view,
    mcp_server_views,
    mcp_tools,
)
from .services import mcp_host_reload, mcp_server_reconnect, mcp_tool_call


class ServerStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["connecting", "connected", "error", "disabled", "per-user", "needs-setup", "needs-sign-in"],
        help_text='"per-user": one connection per user, started on their first use (see the tools endpoints). '
        '"needs-setup": you have not set the required user_vars yet (see the credentials endpoint). '
        '"needs-sign-in": an OAuth server you have not connected your account to yet, or must again '
        "(see the oauth endpoints).",
    )
    last_error = serializers.CharField(
        allow_null=True, help_text="Staff only (null for others); the server's secrets are redacted as ***."
    )
    last_error_at = serializers.DateTimeField(allow_null=True)
    protocol_version = serializers.CharField(allow_null=True)
    server_name = serializers.CharField(allow_null=True)
    server_version = serializers.CharField(allow_null=True)
    capabilities = serializers.DictField()
    instructions = serializers.CharField(allow_null=True)
    connected_since = serializers.DateTimeField(allow_null=True)
    tool_count = serializers.IntegerField()
    calls = serializers.IntegerField()
    # A declared field: the serializer metaclass takes it off the class, so Serializer.errors stands.
    errors = serializers.IntegerField()  # type: ignore[assignment]
    last_call_ms = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "McpServerStatus"

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        if not self.context["request"].user.is_staff:
            data["last_error"] = None  # it can name paths, hosts and the server's own words
        return data


class ServerOutputSerializer(serializers.Serializer):
    """Configuration without secrets: env and header values are never returned, only their names."""

    name = serializers.CharField(source="server.name")
    display_name = serializers.CharField(source="server.display_name")
    description = serializers.CharField(source="server.description")
    transport = serializers.CharField(source="server.transport")
    enabled = serializers.BooleanField(source="server.enabled")
    timeout_seconds = serializers.IntegerField(source="server.timeout_seconds")
    tool_allowlist = serializers.ListField(child=serializers.CharField(), source="server.tool_allowlist")
    denied_tools = serializers.ListField(
        child=serializers.CharField(), source="server.denied_tools", help_text="Never offered nor callable."
    )
    usable = serializers.BooleanField(
        help_text="Whether you may use it; always true except in the listing staff see, which has every server."
    )
    env_keys = serializers.SerializerMethodField()
    header_names = serializers.SerializerMethodField()
    user_vars = serializers.SerializerMethodField(
        help_text="Names of the values each user sets for themselves (see the credentials endpoint)."
    )
    command = serializers.SerializerMethodField(help_text="Staff only; secrets redacted as ***.")
    args = serializers.SerializerMethodField(help_text="Staff only; secrets redacted as ***.")
    url = serializers.SerializerMethodField(help_text="Staff only; password and query values redacted as ***.")
    live = ServerStatusSerializer(source="status")

    class Meta:
        ref_name = "McpServer"

    def _staff(self) -> bool:
        return bool(self.context["request"].user.is_staff)

    def get_env_keys(self, view: ServerView) -> list[str]:
        return sorted(view.server.env)

    def get_header_names(self, view: ServerView) -> list[str]:
        return sorted(view.server.headers)

    def get_user_vars(self, view: ServerView) -> list[str]:
        return sorted(view.server.user_vars or {})

    def get_command(self, view: ServerView) -> str | None:
        return view.redact(view.server.command) if self._staff() else None

    def get_args(self, view: ServerView) -> list[str] | None:
        return [view.redact(arg) for arg in view.server.args] if self._staff() else None

    def get_url(self, view: ServerView) -> str | None:
        return view.redact(view.server.url) if self._staff() else None


class ToolOutputSerializer(serializers.Serializer):
    name = serializers.CharField(source="namespaced_name", help_text="The name offered to models.")
    server = serializers.CharField()
    tool = serializers.CharField(source="name", help_text="The server's own name for it.")
    title = serializers.CharField(allow_null=True)
    description = serializers.CharField()
    input_schema = serializers.DictField()
    output_schema = serializers.DictField(allow_null=True)
    annotations = serializers.DictField()

    class Meta:
        ref_name = "McpTool"


class ToolResultSerializer(serializers.Serializer):
    server = serializers.CharField()
    tool = serializers.CharField()
    content = serializers.ListField(child=serializers.DictField())
    structured_content = serializers.DictField(allow_null=True)
    is_error = serializers.BooleanField()
    duration_ms = serializers.IntegerField()

    class Meta:
        ref_name = "McpToolResult"


def _tools_data(tools: list[ToolInfo]) -> Any:
    return ToolOutputSerializer([tool.model_dump() for tool in tools], many=True).data


class McpStatusApi(APIView):
    class OutputSerializer(serializers.Serializer):
        servers = serializers.DictField(child=serializers.IntegerField())
        total_servers = serializers.IntegerField()
        total_tools = serializers.IntegerField()

        class Meta:
            ref_name = "McpHostStatus"

    @extend_schema(responses=OutputSerializer, operation_id="mcp_status_retrieve")
    async def get(self, request: AuthenticatedRequest) -> Response:
        return Response(self.OutputSerializer(await mcp_host_summary(user=request.user)).data)


class McpServerListApi(APIView):
    @extend_schema(responses=ServerOutputSerializer(many=True), operation_id="mcp_servers_list")
    async def get(self, request: AuthenticatedRequest) -> Response:
        views = await mcp_server_views(user=request.user)
        return Response(ServerOutputSerializer(views, many=True, context={"request": request}).data)


class McpServerDetailApi(APIView):
    @extend_schema(responses=ServerOutputSerializer, operation_id="mcp_servers_retrieve")
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        view = await mcp_server_view(name=name, user=request.user)
        return Response(ServerOutputSerializer(view, context={"request": request}).data)


class McpServerToolsApi(APIView):
    @extend_schema(
        responses={200: ToolOutputSerializer(many=True), **error_responses(400, 503)},
        operation_id="mcp_servers_tools_list",
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        return Response(_tools_data(await mcp_tools(user=request.user, server=name)))


class McpToolListApi(APIView):
    @extend_schema(responses=ToolOutputSerializer(many=True), operation_id="mcp_tools_list")
    async def get(self, request: AuthenticatedRequest) -> Response:
        return Response(_tools_data(await mcp_tools(user=request.user)))


class McpServerReconnectApi(APIView):
    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(request=None, responses={202: None, **error_responses(503)}, operation_id="mcp_servers_reconnect")
    async def post(self, request: AuthenticatedRequest, name: str) -> Response:
        await mcp_server_reconnect(name=name)
        return Response(status=status.HTTP_202_ACCEPTED)


class McpReloadApi(APIView):
    permission_classes = [IsAuthenticated, IsAdminUser]

    class OutputSerializer(serializers.Serializer):
        reconnected = serializers.ListField(child=serializers.CharField())

        class Meta:
            ref_name = "McpReload"

    @extend_schema(request=None, responses=OutputSerializer, operation_id="mcp_reload")
    async def post(self, request: AuthenticatedRequest) -> Response:
        return Response({"reconnected": await mcp_host_reload()})


class McpServerLogApi(APIView):
    """What a server logged (notifications/message), newest first, redacted of its secrets. Staff only."""

    permission_classes = [IsAuthenticated, IsAdminUser]

    class FilterSerializer(serializers.Serializer):
        level = serializers.ChoiceField(
            choices=LogLevel.values, required=False, allow_blank=True, help_text="This level and above; blank: all."
        )
        limit = serializers.IntegerField(min_value=1, max_value=1000, default=100, required=False)

        class Meta:
            ref_name = "McpServerLogFilter"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        level = serializers.ChoiceField(choices=LogLevel.values)
        logger = serializers.CharField(help_text="The server's name for the logger; may be blank.")
        # A declared field: the serializer metaclass takes it off the class, so Serializer.data stands.
        data = serializers.JSONField(allow_null=True, help_text="What the server sent: any JSON value.")  # type: ignore[assignment]
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "McpServerLogEntry"

    @extend_schema(
        parameters=[FilterSerializer], responses=OutputSerializer(many=True), operation_id="mcp_servers_logs_list"
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        # A plain dict, not the QueryDict: DRF reads an empty value in a QueryDict (?level=) as "not given".
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        entries = await run_db(mcp_server_log, name=name, **filters.validated_data)
        return Response(self.OutputSerializer(entries, many=True).data)


class ArgumentsSerializer(serializers.Serializer):
    arguments = serializers.DictField(required=False, default=dict)

    class Meta:
        ref_name = "McpArguments"


class McpToolCallApi(APIView):
    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(
        request=ArgumentsSerializer,
        responses={200: ToolResultSerializer, **error_responses(503)},
        operation_id="mcp_tools_call",
    )
    async def post(self, request: AuthenticatedRequest, name: str, tool: str) -> Response:
        serializer = ArgumentsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        arguments = serializer.validated_data["arguments"]
        result = await mcp_tool_call(server=name, tool=tool, arguments=arguments, user=request.user)
        return Response(ToolResultSerializer(result.model_dump()).data)


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


class McpResourceListApi(APIView):
    class OutputSerializer(serializers.Serializer):
        resources = serializers.ListField(child=serializers.DictField())
        resource_templates = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "McpResources"

    @extend_schema(
        responses={200: OutputSerializer, **error_responses(400, 502, 503)},
        operation_id="mcp_servers_resources_list",
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        listing = await mcp_resources_list(user=request.user, server=name)
        return Response(
            {
                "resources": [_dump(resource) for resource in listing.resources],
                "resource_templates": [_dump(template) for template in listing.resource_templates],
            }
        )


class McpResourceReadApi(APIView):
    class OutputSerializer(serializers.Serializer):
        contents = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "McpResourceContents"

    @extend_schema(
        parameters=[OpenApiParameter("uri", str, required=True, pattern=r"\S", description="Not blank.")],
        responses={200: OutputSerializer, **error_responses(502, 503)},
        operation_id="mcp_servers_resources_read",
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        uri = request.query_params.get("uri", "").strip()
        if not uri:
            raise ValidationFailed("The uri query parameter is required.", details={"uri": ["This field is required."]})

        contents = await mcp_resource_read(user=request.user, server=name, uri=uri)
        return Response({"contents": [_dump(content) for content in contents]})


class McpPromptListApi(APIView):
    class OutputSerializer(serializers.Serializer):
        prompts = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "McpPrompts"

    @extend_schema(
        responses={200: OutputSerializer, **error_responses(400, 502, 503)},
        operation_id="mcp_servers_prompts_list",
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        prompts = await mcp_prompts_list(user=request.user, server=name)
        return Response({"prompts": [_dump(prompt) for prompt in prompts]})


class McpPromptGetApi(APIView):
    class InputSerializer(serializers.Serializer):
        arguments = serializers.DictField(child=StrictCharField(), required=False, default=dict)

        class Meta:
            ref_name = "McpPromptArguments"

    class OutputSerializer(serializers.Serializer):
        description = serializers.CharField(allow_null=True)
        messages = serializers.ListField(child=serializers.DictField())

        class Meta:
            ref_name = "McpPrompt"

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(502, 503)},
        operation_id="mcp_servers_prompts_get",
    )
    async def post(self, request: AuthenticatedRequest, name: str, prompt: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        arguments = serializer.validated_data["arguments"]

        result = await mcp_prompt_get(user=request.user, server=name, prompt=prompt, arguments=arguments)
        return Response({"description": result.description, "messages": [_dump(m) for m in result.messages]})


class UserVarSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    secret = serializers.BooleanField(help_text="Show as a password field.")
    # A declared field: the serializer metaclass takes it off the class, so Field.required stands.
    required = serializers.BooleanField(  # type: ignore[assignment]
        help_text="Until it is set, the server is not offered to your model."
    )
    set = serializers.BooleanField(help_text="Whether you have set it (its value is never returned).")

    class Meta:
        ref_name = "McpUserVar"


class McpCredentialsApi(APIView):
    """The caller's own values of a server's ``user_vars``: what is set (never a value), replace, clear.

    404 for a server the caller may not use; 400 ``no_user_vars`` for one that declares none.
    """

    class InputSerializer(serializers.Serializer):
        values = serializers.DictField(
            child=StrictCharField(allow_blank=True, max_length=MAX_VALUE_CHARS),
            help_text="Every value you set for this server: names not given (or blank) are unset. Only the "
            'server\'s user_vars; no "${NAME}" reference in a value.',
        )

        class Meta:
            ref_name = "McpCredentialsInput"

    class OutputSerializer(serializers.Serializer):
        server = serializers.CharField()
        vars = UserVarSerializer(many=True)
        missing = serializers.ListField(child=serializers.CharField(), help_text="Required variables not set.")

        class Meta:
            ref_name = "McpCredentials"

    class SetOutputSerializer(serializers.Serializer):
        server = serializers.CharField()
        set = serializers.ListField(child=serializers.CharField(), help_text="The variables now set.")
        missing = serializers.ListField(child=serializers.CharField(), help_text="Required variables not set.")

        class Meta:
            ref_name = "McpCredentialsSet"

    @extend_schema(
        responses={200: OutputSerializer, **error_responses(400)}, operation_id="mcp_servers_credentials_retrieve"
    )
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        user = request.user

        def read() -> dict[str, Any]:
            server = mcp_server_for_credentials(name=name, user=user)
            states = user_var_states(server=server, user=user)
            return {
                "server": server.name,
                "vars": states,
                "missing": [state.name for state in states if state.required and not state.set],
            }

        return Response(self.OutputSerializer(await run_db(read)).data)

    @extend_schema(
        request=InputSerializer,
        responses={200: SetOutputSerializer},
        operation_id="mcp_servers_credentials_update",
    )
    async def put(self, request: AuthenticatedRequest, name: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data["values"]
        user = request.user

        def write() -> dict[str, Any]:
            server = mcp_server_for_credentials(name=name, user=user)
            names = credential_set(server=server, user=user, values=values)
            return {
                "server": server.name,
                "set": names,
                "missing": [var for var in required_user_vars(server) if var not in names],
            }

        return Response(self.SetOutputSerializer(await run_db(write)).data)

    @extend_schema(responses={204: None, **error_responses(400)}, operation_id="mcp_servers_credentials_destroy")
    async def delete(self, request: AuthenticatedRequest, name: str) -> Response:
        user = request.user

        def clear() -> None:
            credential_delete(server=mcp_server_for_credentials(name=name, user=user), user=user)

        await run_db(clear)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- OAuth sign-in (mcp_servers.oauth) ----------------------------------------------------------------


def oauth_redirect_uri(request: Any) -> str:
    """The callback URI to register at authorization servers: MCP_OAUTH_REDIRECT_URI, else this site's own."""
    from django.conf import settings
    from django.urls import reverse

    return settings.MCP_OAUTH_REDIRECT_URI or request.build_absolute_uri(reverse("mcp-oauth-callback"))


class McpOAuthApi(APIView):
    """The caller's OAuth sign-in to a server: its state (never a token), and signing out.

    404 for a server the caller may not use; 400 ``not_oauth`` for one that does not use OAuth sign-in.
    """

    class OutputSerializer(serializers.Serializer):
        server = serializers.CharField()
        signed_in = serializers.BooleanField(help_text="False: the server is needs-sign-in for you.")
        signed_in_at = serializers.DateTimeField(allow_null=True)
        scope = serializers.CharField(help_text="Granted.")
        needs_scope = serializers.CharField(help_text="Asked for by the server since (step-up); blank if none.")

        class Meta:
            ref_name = "McpOAuthState"

    @extend_schema(responses={200: OutputSerializer, **error_responses(400)}, operation_id="mcp_servers_oauth_retrieve")
    async def get(self, request: AuthenticatedRequest, name: str) -> Response:
        user = request.user

        def read() -> dict[str, Any]:
            return oauth_state_for(server=mcp_server_for_oauth(name=name, user=user), user=user)

        return Response(self.OutputSerializer(await run_db(read)).data)

    @extend_schema(responses={204: None, **error_responses(400)}, operation_id="mcp_servers_oauth_destroy")
    async def delete(self, request: AuthenticatedRequest, name: str) -> Response:
        user = request.user

        def forget() -> None:
            oauth_sign_out(server=mcp_server_for_oauth(name=name, user=user), user=user)

        await run_db(forget)
        return Response(status=status.HTTP_204_NO_CONTENT)


class McpOAuthConnectApi(APIView):
    """Start the caller's browser sign-in: discovery, client registration, PKCE; where to send the browser.

    The authorization server sends the browser back to ``/api/mcp/oauth/callback``, which stores the tokens
    and returns to the chat page.
    """

    class OutputSerializer(serializers.Serializer):
        authorization_url = serializers.CharField(help_text="Open it in the browser; valid for 10 minutes.")

        class Meta:
            ref_name = "McpOAuthConnect"

    @extend_schema(
        request=None,
        responses={200: OutputSerializer, **error_responses(400, 502)},
        operation_id="mcp_servers_oauth_connect",
    )
    async def post(self, request: AuthenticatedRequest, name: str) -> Response:
        user = request.user
        server = await run_db(mcp_server_for_oauth, name=name, user=user)
        url = await oauth_flow_start(server=server, user=user, redirect_uri=oauth_redirect_uri(request))
        return Response(self.OutputSerializer({"authorization_url": url}).data)


def oauth_client_metadata(request: Any) -> Any:
    """The platform's OAuth client ID metadata document (CIMD), public: authorization servers fetch it.

    Served at the URL MCP_OAUTH_CLIENT_METADATA_URL names (this view's path on the public HTTPS host); 404
    ``cimd_not_configured`` while that setting is blank.
    """
    from django.conf import settings
    from django.http import JsonResponse

    from .oauth import client_metadata_document

    if not settings.MCP_OAUTH_CLIENT_METADATA_URL:
        error = {"code": "cimd_not_configured", "message": "MCP_OAUTH_CLIENT_METADATA_URL is not set."}
        return JsonResponse({"error": error}, status=404)
    response = JsonResponse(client_metadata_document(redirect_uri=oauth_redirect_uri(request)))
    response["Cache-Control"] = "public, max-age=300"
    return response


async def oauth_callback(request: Any) -> Any:
    """Where the authorization server sends the browser back: store the tokens, return to the chat page.

    The page is told how it went in its query string (``mcp_oauth=<server>`` or ``mcp_oauth_error=...``).
    """
    from urllib.parse import urlencode

    from django.contrib.auth.views import redirect_to_login
    from django.http import HttpResponseRedirect

    from platform_site.exceptions import ApplicationError

    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    query = request.GET
    try:
        name = await oauth_flow_finish(
            user=user,
            state=query.get("state", ""),
            code=query.get("code"),
            iss=query.get("iss"),
            error=query.get("error"),
        )
    except ApplicationError as exc:
        return HttpResponseRedirect("/?" + urlencode({"mcp_oauth_error": exc.message}))
    return HttpResponseRedirect("/?" + urlencode({"mcp_oauth": name}))
