"""Admin for MCP servers: live status from this worker's host, test/reconnect actions, tool lists
with each tool's effective approval policy.

Saving or deleting a server is announced to every worker's host after commit,
so the change takes effect everywhere without a restart. Env and header values
are write-only: lists show names only, the change form shows each stored value
as ******** and keeps it unless a new value is typed over the mask.
"""

import json
import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .config import ServerSpec
from .credentials import credential_row_names, credential_rows_delete
from .models import McpServer, McpServerHealthSnapshot, McpServerLogEntry, McpUserCredential, Policy
from .policies import effective_policy
from .redaction import SECRET_MASK, is_reference, mask_values, redactor_for, unmask_values
from .results import ServerStatus, ToolInfo
from .selectors import mcp_host_statuses, mcp_server_log, mcp_server_tools_offered
from .services import SECRET_FIELDS, mcp_config_changed, mcp_server_probe, mcp_servers_reconnect

logger = logging.getLogger(__name__)

RECENT_LOG_ENTRIES = 20


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
        return mcp_host_statuses()
    except Exception:  # the admin must render even if the host cannot be reached
        logger.exception("could not read MCP host status")
        return {}


def _offered_tools(obj: McpServer) -> tuple[list[ToolInfo], str]:
    """The tools this worker's host has for the server, and a note when it has none."""
    if not obj.enabled:
        return [], "The server is disabled: its tools are not known."
    try:
        tools = mcp_server_tools_offered(name=obj.name)
    except Exception as exc:
        return [], f"Its tools are unavailable: {exc}"
    return tools, "" if tools else "No tools (not connected, or the server offers none)."


# Why a tool has its policy, by the source mcp_servers.policies.effective_policy names.
POLICY_SOURCES = {
    "tool": "set for this tool",
    "readOnlyHint": "the server marks it read-only (readOnlyHint)",
    "destructiveHint": "the server marks it destructive (destructiveHint)",
}


def effective_policy_rows(obj: McpServer, offered: list[ToolInfo]) -> list[tuple[str, str, str]]:
    """(tool, policy, why) for each offered tool, then for each tool with a policy or denied that is not offered."""
    default_source = f"server default ({obj.approval_default})" if obj.approval_default else "no server default: allow"
    rows = []
    for tool in offered:
        policy, source = effective_policy(
            tool=tool.name, annotations=tool.annotations, default=obj.approval_default, tools=obj.tool_policies
        )
        rows.append((tool.name, policy, POLICY_SOURCES.get(source, default_source)))
    names = {tool.name for tool in offered}
    for name in sorted(set(obj.denied_tools) - names):
        rows.append((name, Policy.DENY.value, "denied tools (Access): never offered nor callable"))
    for name, policy in sorted(obj.tool_policies.items()):
        if name not in names and name not in obj.denied_tools:
            rows.append((name, policy, "set for this tool, which the server does not offer now"))
    return rows


class McpServerForm(forms.ModelForm):
    """Env and header values are write-only: rendered masked, and a mask sent back keeps the stored value."""

    class Meta:
        model = McpServer
        fields = "__all__"  # noqa: DJ007 (the admin's fieldsets choose what is shown)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stored = {name: dict(getattr(self.instance, name) or {}) for name in SECRET_FIELDS}
        if "oauth_client_secret" in self.fields and self.instance.oauth_client_secret:
            self.initial["oauth_client_secret"] = SECRET_MASK
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

    def clean_oauth_client_secret(self) -> Any:
        # Write-only like env values: the stored secret is shown masked and kept unless typed over.
        value = self.cleaned_data.get("oauth_client_secret")
        return self.instance.oauth_client_secret if value == SECRET_MASK else value

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and self.errors:
            self._drop_repeated_errors()

    def _drop_repeated_errors(self) -> None:
        # The model checks its JSON shapes with field validators and again in clean() (validators skip
        # {} and []), so a bad value would show the same message twice: keep each message once.
        for errors in self.errors.values():
            seen: set[tuple[str, ...]] = set()
            unique = []
            for error in errors.as_data():
                key = tuple(error.messages)
                if key not in seen:
                    seen.add(key)
                    unique.append(error)
            errors.data[:] = unique

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
    readonly_fields = ("live_status", "tools_overview", "effective_policies", "recent_log")
    fieldsets = (
        (None, {"fields": ("name", "display_name", "description", "enabled", "transport", "timeout_seconds")}),
        ("stdio", {"fields": ("command", "args", "cwd", "env")}),
        ("HTTP", {"fields": ("url", "headers")}),
        (
            "OAuth",
            {
                "fields": ("auth", "oauth_client_id", "oauth_client_secret", "oauth_scopes", "oauth_issuer"),
                "description": "HTTP servers that need OAuth 2.1. With oauth, each user connects their own account "
                'from the chat page ("Connect"); register <code>https://&lt;this site&gt;/api/mcp/oauth/callback'
                "</code> (or MCP_OAUTH_REDIRECT_URI) as the redirect URI of a client you register beforehand, or "
                "leave the client ID blank for dynamic registration. client_credentials: one token for the whole "
                "platform, from the client ID and secret.",
            },
        ),
        ("Tools", {"fields": ("tool_allowlist", "live_status", "tools_overview")}),
        (
            "Access",
            {
                "fields": ("access_restricted", "allowed_users", "allowed_groups", "denied_tools"),
                "description": "Open to everyone unless restricted; staff follow the same rules in their own chats.",
            },
        ),
        (
            "Tool approval",
            {
                "fields": ("approval_default", "tool_policies", "effective_policies"),
                "description": "Whether a call runs at once (allow), waits for the user's yes (ask) or never runs "
                "(deny). A tool's own policy wins; without one, a tool the server marks read-only is allowed and "
                "one it marks destructive asks (the server's hints, not trusted over your choice); everything "
                "else follows the server default, itself allow when blank.",
            },
        ),
        (
            "User variables",
            {
                "fields": ("user_vars",),
                "description": "Values each user sets for themselves, such as their own API token. "
                'Each is {"title", "description", "secret": true|false, "required": true|false}, all optional.',
            },
        ),
        (
            "Log and roots",
            {
                "fields": ("log_level", "roots", "recent_log"),
                "description": "A new log level or new roots are sent to the running server (no reconnect); "
                "giving roots to a server that had none, or taking them all away, reconnects it.",
            },
        ),
    )
    filter_horizontal = ("allowed_users", "allowed_groups")

    def get_fieldsets(self, request: HttpRequest, obj: McpServer | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # View-only: read-only fields show the row's own values, so the secrets are swapped for their masked form.
        swap = {"env": "masked_env", "headers": "masked_headers", "oauth_client_secret": "masked_client_secret"}
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

    @admin.display(description="OAuth client secret")
    def masked_client_secret(self, obj: McpServer) -> str:
        return SECRET_MASK if obj.oauth_client_secret else ""

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
            tools = mcp_server_tools_offered(name=obj.name)
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

    @admin.display(description="effective policies")
    def effective_policies(self, obj: McpServer) -> str:
        if obj.pk is None:
            return "—"
        offered, note = _offered_tools(obj)
        rows = effective_policy_rows(obj, offered)
        table = format_html(
            "<table><thead><tr><th>tool</th><th>policy</th><th>why</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                '<tr><th scope="row"><code>{}</code></th><td>{}</td><td>{}</td></tr>',
                rows,
            ),
        )
        if not note:
            return table
        return format_html("{}<p>{}</p>", table, note) if rows else note

    @admin.display(description="recent log")
    def recent_log(self, obj: McpServer) -> str:
        if obj.pk is None:
            return "—"
        entries = mcp_server_log(name=obj.name, limit=RECENT_LOG_ENTRIES)
        if not entries:
            return "nothing logged (a server logs only when it declares logging, or at the level asked)"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (f"{entry.created_at:%Y-%m-%d %H:%M:%S}", entry.level, entry.logger, json.dumps(entry.data)[:500])
                for entry in entries
            ),
        )
        return format_html(
            "<table><thead><tr><th>at</th><th>level</th><th>logger</th><th>data</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}?server={}">All of it</a></p>',
            rows,
            reverse("admin:mcp_servers_mcpserverlogentry_changelist"),
            obj.name,
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
        for server in queryset:
            result = mcp_server_probe(server=server)
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
        names = mcp_servers_reconnect(names=list(queryset.filter(enabled=True).values_list("name", flat=True)))
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


@admin.register(McpUserCredential)
class McpUserCredentialAdmin(admin.ModelAdmin):
    """Which users set values for which servers, and which names: never a value. Rows are set by their users
    (the credentials endpoint, the chat page); here they can only be deleted (the user then sets them again)."""

    list_display = ("server", "user", "names_set", "updated_at")
    list_filter = ("server",)
    search_fields = ("server__name", "user__username")
    list_select_related = ("server", "user")
    fields = ("server", "user", "names_set", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: McpUserCredential | None = None) -> bool:
        return False

    @admin.display(description="variables set")
    def names_set(self, obj: McpUserCredential) -> str:
        names = credential_row_names(obj)
        if names is None:
            return "(unreadable with the configured MCP_CREDENTIALS_KEYS)"
        return ", ".join(names) or "—"

    def delete_model(self, request: HttpRequest, obj: McpUserCredential) -> None:
        credential_rows_delete(rows=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[McpUserCredential]) -> None:
        credential_rows_delete(rows=queryset.select_related("server"))


@admin.register(McpServerLogEntry)
class McpServerLogEntryAdmin(admin.ModelAdmin):
    """What servers logged (notifications/message), newest first; written by the host only."""

    list_display = ("created_at", "server", "level", "logger", "short_data")
    list_filter = ("server", "level")
    search_fields = ("server", "logger")
    date_hierarchy = "created_at"
    fields = ("created_at", "server", "level", "logger", "data")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: McpServerLogEntry | None = None) -> bool:
        return False

    @admin.display(description="data")
    def short_data(self, obj: McpServerLogEntry) -> str:
        return json.dumps(obj.data)[:200]
