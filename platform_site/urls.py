"""The URL map: admin, health probes, OpenAPI docs and each app's API routes under /api/."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from accounts import views as accounts_views
from chats.views import home

from . import errors, health
from .schema_view import SchemaView

admin.site.site_header = "LLM Platform"
admin.site.site_title = "LLM Platform admin"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", home, name="home"),
    path("login/", accounts_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        errors.api_safe_methods_only(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/", include("accounts.urls")),
    path("api/", include("prompts.urls")),
    path("api/", include("chats.urls")),
    path("api/", include("usage.urls")),
    path("api/", include("providers.urls")),
    path("api/", include("mcp_servers.urls")),
    # The OpenAI- and Anthropic-compatible API: the same engine for clients that speak theirs.
    path("v1/", include("chats.fronts.urls")),
    # Unknown API paths answer in the API's JSON error shape, DEBUG or not.
    re_path(r"^api/", errors.api_not_found),
]

handler400 = "platform_site.errors.bad_request"
handler404 = "platform_site.errors.page_not_found"
handler500 = "platform_site.errors.server_error"
