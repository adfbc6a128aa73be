from django.urls import path

from . import apis

urlpatterns = [
    path("mcp/status", apis.McpStatusApi.as_view(), name="mcp-status"),
    path("mcp/reload", apis.McpReloadApi.as_view(), name="mcp-reload"),
    path("mcp/tools", apis.McpToolListApi.as_view(), name="mcp-tools"),
    path("mcp/servers", apis.McpServerListApi.as_view(), name="mcp-servers"),
    path("mcp/servers/<str:name>", apis.McpServerDetailApi.as_view(), name="mcp-server"),
    path("mcp/servers/<str:name>/tools", apis.McpServerToolsApi.as_view(), name="mcp-server-tools"),
    path("mcp/servers/<str:name>/tools/<str:tool>/call", apis.McpToolCallApi.as_view(), name="mcp-tool-call"),
    path("mcp/servers/<str:name>/credentials", apis.McpCredentialsApi.as_view(), name="mcp-server-credentials"),
    path("mcp/servers/<str:name>/oauth", apis.McpOAuthApi.as_view(), name="mcp-server-oauth"),
    path("mcp/servers/<str:name>/oauth/connect", apis.McpOAuthConnectApi.as_view(), name="mcp-server-oauth-connect"),
    path("mcp/oauth/callback", apis.oauth_callback, name="mcp-oauth-callback"),
    path("mcp/oauth/client-metadata.json", apis.oauth_client_metadata, name="mcp-oauth-client-metadata"),
    path("mcp/servers/<str:name>/reconnect", apis.McpServerReconnectApi.as_view(), name="mcp-server-reconnect"),
    path("mcp/servers/<str:name>/logs", apis.McpServerLogApi.as_view(), name="mcp-server-logs"),
    path("mcp/servers/<str:name>/resources", apis.McpResourceListApi.as_view(), name="mcp-server-resources"),
    path("mcp/servers/<str:name>/resources/read", apis.McpResourceReadApi.as_view(), name="mcp-resource-read"),
    path("mcp/servers/<str:name>/prompts", apis.McpPromptListApi.as_view(), name="mcp-server-prompts"),
    path("mcp/servers/<str:name>/prompts/<str:prompt>/get", apis.McpPromptGetApi.as_view(), name="mcp-prompt-get"),
]
