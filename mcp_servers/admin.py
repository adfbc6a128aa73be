"""Admin for MCP servers: live status from this worker's host, test/reconnect actions, tool lists.

Saving or deleting a server is announced to every worker's host after commit,
so the change takes effect everywhere without a restart. Env and header values
are write-only: lists show names only, the change form shows each stored value
as ******** and keeps it unless a new value is typed over the mask.
"""

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from .config import ServerSpec
from .host import get_host
from .models import McpServer, McpServerHealthSnapshot
from .redaction import SECRET_MASK, is_reference, mask_values, redactor_for, unmask_values
from .results import ServerStatus
from .services import SECRET_FIELDS, mcp_config_changed

logger = logging.getLogger(__name__)


def mask_mapping(mapping: dict[str, str]) -> str:
    """Names only; a value is shown only when it is exactly one ${VAR} reference (which is not a secret)."""
    if not mapping:
        return "—"
    shown = []
    for key, value in sorted(mapping.items()):  # PostgreSQL's jsonb does not keep key order
        shown.append(f"{key}={value if is_reference(value) else '••••'}")
    return ", ".join(shown)


def _statuses() -> dict[str, ServerStatus]:
    try:
        return {status.name: status for status in get_host().statuses()}
    except Exception:  # the admin must render even if the host cannot be reached
        logger.exception("could not read MCP host status")
        return {}


class McpServerForm(forms.ModelForm):
    """Env and header values are write-only: rendered masked, and a mask sent back keeps the stored value."""

    class Meta:
        model = McpServer
        fields = "__all__"  # noqa: DJ007 (the admin's fieldsets choose what is shown)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored = {name: dict(getattr(self.instance, name) or {}) for name in SECRET_FIELDS}
        for name in SECRET_FIELDS:
            if name not in self.fields:  # a view-only user's form: the admin shows masked_* instead
                continue
            if self.instance.pk is not None:
                self.initial[name] = mask_values(self._stored[name])
            self.fields[
                name
            ].help_text += (
                f" Stored values show as {SECRET_MASK}; leave it to keep a value, type over it to replace it."
            )

    def _unmasked(self, name: str) -> Any:
        value = self.cleaned_data.get(name)
        if not isinstance(value, dict):
            return value  # the model's validators report a wrong shape
        value, missing = unmask_values(value, self._stored[name])
        if missing:
            raise forms.ValidationError(f"No stored value to keep for {', '.join(missing)}: enter the value.")
        return value

    def clean_env(self) -> Any:
        return self._unmasked("env")

    def clean_headers(self) -> Any:
        return self._unmasked("headers")


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["platform_site/admin-status.css"]}

    form = McpServerForm
    list_filter = ("transport", "enabled", "access_restricted")
    search_fields = ("name", "display_name", "description", "command", "url")
    actions = ("test_connection", "reconnect")
    readonly_fields = ("live_status", "tools_overview")
    fieldsets = (
        (None, {"fields": ("name", "display_name", "description", "enabled", "transport", "timeout_seconds")}),
        ("stdio", {"fields": ("command", "args", "cwd", "env")}),
        ("HTTP", {"fields": ("url", "headers")}),
        ("Tools", {"fields": ("tool_allowlist", "live_status", "tools_overview")}),
        (
            "Access",
            {
                "fields": ("access_restricted", "allowed_users", "allowed_groups", "denied_tools"),
                "description": "Open to everyone unless restricted; staff follow the same rules in their own chats.",
            },
        ),
    )
    filter_horizontal = ("allowed_users", "allowed_groups")

    def get_fieldsets(self, request: HttpRequest, obj: McpServer | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # View-only: read-only fields show the row's own values, so the secrets are swapped for their masked form.
        swap = {"env": "masked_env", "headers": "masked_headers"}
        return [
            (title, {**options, "fields": tuple(swap.get(str(field), field) for field in options["fields"])})
            for title, options in fieldsets
        ]

    def get_list_display(self, request: HttpRequest):
        statuses = _statuses()  # one host round trip for the whole page

        @admin.display(description="status")
        def live(obj: McpServer) -> str:
            state = statuses.get(obj.name)
            name = state.status if state else ("disabled" if not obj.enabled else "connecting")
            return format_html('<b class="status-{}">{}</b>', name, name)

        @admin.display(description="tools")
        def tool_count(obj: McpServer) -> int | str:
            state = statuses.get(obj.name)
            return state.tool_count if state and state.status == "connected" else "—"

        @admin.display(description="last error")
        def last_error(obj: McpServer) -> str:
            state = statuses.get(obj.name)
            return (state.last_error or "")[:200] if state else ""

        return (
            "name",
            "display_name",
            "transport",
            "endpoint",
            "enabled",
            live,
            tool_count,
            last_error,
            "masked_env",
            "masked_headers",
        )

    @admin.display(description="command / URL")
    def endpoint(self, obj: McpServer) -> str:
        redact = redactor_for(ServerSpec.from_row(obj))
        if obj.transport == "stdio":
            return redact(" ".join([obj.command, *obj.args]))[:120]
        return redact(obj.url)

    @admin.display(description="env")
    def masked_env(self, obj: McpServer) -> str:
        return mask_mapping(obj.env)

    @admin.display(description="headers")
    def masked_headers(self, obj: McpServer) -> str:
        return mask_mapping(obj.headers)

    @admin.display(description="live status")
    def live_status(self, obj: McpServer) -> str:
        if obj.pk is None:
            return "—"
        state = _statuses().get(obj.name)
        if state is None:
            return "not connected in this worker"
        details: list[str] = [state.status]
        if state.server_name:
            details.append(f"{state.server_name} {state.server_version or ''}".strip())
        if state.protocol_version:
            details.append(f"protocol {state.protocol_version}")
        if state.last_error:
            details.append(f"error: {state.last_error}")
        return " · ".join(details)

    @admin.display(description="tools")
    def tools_overview(self, obj: McpServer) -> str:
        if obj.pk is None or not obj.enabled:
            return "—"
        try:
            tools = get_host().tools([obj.name])
        except Exception as exc:
            return f"unavailable: {exc}"
        if not tools:
            return "no tools (not connected, or the server offers none)"
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (
                    tool.name,
                    tool.namespaced_name,
                    tool.description,
                    ", ".join(f"{k}={v}" for k, v in sorted(tool.annotations.items())) or "—",
                )
                for tool in tools
            ),
        )
        return format_html(
            "<table><thead><tr><th>tool</th><th>offered to models as</th><th>description</th>"
            "<th>annotations</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    # --- writes announce themselves to every worker -----------------------------------------

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        mcp_config_changed()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        mcp_config_changed()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        mcp_config_changed()

    # --- actions ---------------------------------------------------------------------------------

    @admin.action(description="Test connection (connect, list tools, report latency)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        host = get_host()
        for server in queryset:
            result = host.probe(ServerSpec.from_row(server))
            if result["ok"]:
                self.message_user(
                    request,
                    f"{server.name}: connected in {result['latency_ms']} ms, {len(result['tools'])} tools"
                    f" ({', '.join(result['tools'][:10])}{'…' if len(result['tools']) > 10 else ''})",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request, f"{server.name}: failed after {result['latency_ms']} ms: {result['error']}", messages.ERROR
                )

    @admin.action(description="Reconnect")
    def reconnect(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        host = get_host()
        names = []
        for server in queryset.filter(enabled=True):
            try:
                host.reconnect(server.name)
                names.append(server.name)
            except LookupError:
                continue
        self.message_user(request, f"Reconnecting: {', '.join(names) or 'nothing (no enabled server selected)'}.")


@admin.register(McpServerHealthSnapshot)
class McpServerHealthSnapshotAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["platform_site/admin-status.css"]}

    list_display = ("created_at", "server", "coloured_status", "tool_count", "last_call_ms", "short_error")
    list_filter = ("status", "server")
    search_fields = ("server", "last_error")
    date_hierarchy = "created_at"

    # Written only by the periodic health check.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: McpServerHealthSnapshot) -> str:
        return format_html('<b class="status-{}">{}</b>', obj.status, obj.status)

    @admin.display(description="last error")
    def short_error(self, obj: McpServerHealthSnapshot) -> str:
        return obj.last_error[:200]
