"""ASGI entry point: HTTP to Django, WebSockets through origin and auth checks to app routing."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")

from platform_site.asgi_handler import get_asgi_application

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from accounts.channels_auth import ApiKeyAuthMiddleware  # noqa: E402
from chats.routing import websocket_urlpatterns  # noqa: E402
from mcp_servers.host import host_start_at_boot  # noqa: E402
from providers.registry import adapters_import  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(ApiKeyAuthMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# Each web process (one per core in production) loads the provider SDKs and connects its MCP servers now,
# not inside its first requests, where either would hold up every connection of the process.
adapters_import()
host_start_at_boot()
