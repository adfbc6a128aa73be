"""Admin for MCP servers; secret values in env and headers never appear in list views."""

from django.contrib import admin

from .models import McpServer


def mask_mapping(mapping: dict[str, str]) -> str:
    """Names only; a value is shown only when it is a ${VAR} reference (which is not a secret)."""
    if not mapping:
        return "—"
    shown = []
    for key, value in mapping.items():
        is_reference = value.startswith("${") and value.endswith("}")
        shown.append(f"{key}={value if is_reference else '••••'}")
    return ", ".join(shown)


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "display_name",
        "transport",
        "endpoint",
        "masked_env",
        "masked_headers",
        "enabled",
        "timeout_seconds",
        "updated_at",
    )
    list_filter = ("transport", "enabled")
    search_fields = ("name", "display_name", "description", "command", "url")

    @admin.display(description="command / URL")
    def endpoint(self, obj: McpServer) -> str:
        if obj.transport == "stdio":
            return " ".join([obj.command, *obj.args])[:120]
        return obj.url

    @admin.display(description="env")
    def masked_env(self, obj: McpServer) -> str:
        return mask_mapping(obj.env)

    @admin.display(description="headers")
    def masked_headers(self, obj: McpServer) -> str:
        return mask_mapping(obj.headers)
