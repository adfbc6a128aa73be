"""Writes of MCP server configuration. Every change reaches every worker's host after commit."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from platform_site.exceptions import NotFound, PermissionDenied

from .broadcast import broadcast_config_changed
from .config import ServerSpec
from .config_io import ConfigFileError, ParsedServer
from .connection import ServerUnavailable
from .host import UnknownServer, UnknownTool, get_host
from .models import McpServer, McpServerHealthSnapshot, Transport
from .redaction import unmask_values
from .results import ToolResult
from .selectors import mcp_server_view, mcp_unavailable_error


def mcp_config_changed() -> None:
    """Schedule the broadcast for when the current transaction commits (at once outside one)."""
    transaction.on_commit(broadcast_config_changed)


@transaction.atomic
def mcp_server_save(*, server: McpServer) -> McpServer:
    server.full_clean()
    server.save()
    mcp_config_changed()
    return server


@transaction.atomic
def mcp_server_delete(*, server: McpServer) -> None:
    server.delete()
    mcp_config_changed()


def default_mcp_servers() -> list[McpServer]:
    """What a fresh install offers: the time server (a Python package in requirements.txt) and,
    where npx exists, the filesystem server sandboxed to ``workspace/``."""
    servers = [
        McpServer(
            name="time",
            display_name="Time",
            description="Current time and time-zone conversion (mcp-server-time).",
            transport=Transport.STDIO,
            command="mcp-server-time",
        )
    ]
    workspace = Path(settings.MCP_WORKSPACE_DIR)
    servers.append(
        McpServer(
            name="filesystem",
            display_name="Files",
            description=f"Read and write files in the sandbox {workspace}.",
            transport=Transport.STDIO,
            command="npx",
            args=["-y", "@modelcontextprotocol/server-filesystem", str(workspace)],
            enabled=shutil.which("npx") is not None,
            timeout_seconds=60,
        )
    )
    return servers


@transaction.atomic
def mcp_servers_ensure_defaults() -> list[str]:
    """Create the default servers that do not exist yet; the names created."""
    created = []
    for server in default_mcp_servers():
        if McpServer.objects.filter(name=server.name).exists():
            continue
        if server.name == "filesystem":
            Path(settings.MCP_WORKSPACE_DIR).mkdir(parents=True, exist_ok=True)
        server.full_clean()
        server.save()
        created.append(server.name)
    if created:
        mcp_config_changed()
    return created


async def mcp_server_reconnect(*, name: str) -> None:
    view = await mcp_server_view(name=name)
    if not view.server.enabled:
        raise mcp_unavailable_error(name=name, status="disabled", reason=None)
    await get_host().areconnect(name)


def mcp_server_probe(*, server: McpServer) -> dict[str, Any]:
    """Connect to ``server`` afresh (outside the pool), list its tools, disconnect; blocks (admin's "Test
    connection"). ``{"ok", "error", "latency_ms", "tools"}`` and, when it connected, ``"server"``."""
    return get_host().probe(ServerSpec.from_row(server))


def mcp_servers_reconnect(*, names: list[str]) -> list[str]:
    """Reconnect each of ``names`` in this worker's host; blocks (admin). The names it knew."""
    host = get_host()
    reconnected = []
    for name in names:
        try:
            host.reconnect(name)
        except LookupError:
            continue
        reconnected.append(name)
    return reconnected


async def mcp_host_reload() -> list[str]:
    return await get_host().areload()


async def mcp_tool_call(*, server: str, tool: str, arguments: dict[str, Any], user: User) -> ToolResult:
    """A direct (staff) tool call by the server's own tool name. Tool failures are error results.

    A per-user server is called on ``user``'s own connection (their sandbox, their values).

    Staff only: a server that is down says why (its redacted last error). A denied tool is denied to staff too.
    """
    view = await mcp_server_view(name=server)
    if tool in view.server.denied_tools:
        raise PermissionDenied(
            f"Tool {tool!r} of MCP server {server!r} is denied by its configuration.", code="tool_denied"
        )
    if view.status.status in ("disabled", "error"):
        raise mcp_unavailable_error(name=server, status=view.status.status, reason=view.status.last_error)
    try:
        return await get_host().acall_server_tool(server, tool, arguments, user=user)
    except UnknownServer as exc:
        raise NotFound(f"Unknown MCP server {server!r}.", code="unknown_mcp_server") from exc
    except UnknownTool as exc:
        raise NotFound(f"MCP server {server!r} has no tool {tool!r}.", code="unknown_tool") from exc
    except ServerUnavailable as exc:
        raise mcp_unavailable_error(name=server, status=exc.status, reason=exc.reason) from exc


# The McpServer fields a configuration file sets; anything else (tool_allowlist) is left as it is.
# Who may use a restricted server (allowed_users, allowed_groups) is set too, when the entry has "access".
IMPORTED_FIELDS = (
    "display_name",
    "description",
    "transport",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "enabled",
    "timeout_seconds",
    "denied_tools",
    "access_restricted",
    "approval_default",
    "tool_policies",
    "user_vars",
    "roots",
    "auth",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scopes",
    "oauth_issuer",
)


# Fields whose values are masked in exports and admin forms.
SECRET_FIELDS = ("env", "headers")


@dataclass(frozen=True)
class ImportReport:
    created: tuple[str, ...]
    # (name, changed field names) for each server that was updated.
    updated: tuple[tuple[str, tuple[str, ...]], ...]
    unchanged: tuple[str, ...]
    dry_run: bool

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


# Set with .set() after the row is saved, not by save(update_fields=...).
ACCESS_LISTS = ("allowed_users", "allowed_groups")


def _access_lookup(servers: list[ParsedServer]) -> tuple[dict[str, User], dict[str, Group]]:
    """The users and groups the entries' "access" names, by username and group name (two queries at most)."""
    usernames = {name for server in servers if server.access for name in server.access.users}
    group_names = {name for server in servers if server.access for name in server.access.groups}
    users = {user.get_username(): user for user in User.objects.filter(username__in=usernames)} if usernames else {}
    groups = {group.name: group for group in Group.objects.filter(name__in=group_names)} if group_names else {}
    return users, groups


def _validation_messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


@transaction.atomic
def mcp_servers_import(*, servers: list[ParsedServer], dry_run: bool = False) -> ImportReport:
    """Create or update servers by name, all or nothing: every row is validated before any is saved.

    An invalid entry raises ConfigFileError naming every server that failed; nothing is written.
    """
    names = [server.name for server in servers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigFileError(f"Server(s) listed more than once: {', '.join(duplicates)}.")
    existing = {
        row.name: row
        for row in McpServer.objects.select_for_update()
        .filter(name__in=names)
        .prefetch_related("allowed_users", "allowed_groups")
    }
    users, groups = _access_lookup(servers)

    to_create: list[McpServer] = []
    to_update: list[tuple[McpServer, list[str]]] = []
    # The users and groups to set on each restricted server, by name.
    access: dict[str, tuple[list[User], list[Group]]] = {}
    unchanged: list[str] = []
    errors: list[str] = []
    for server in servers:
        values = {field: getattr(server, field) for field in IMPORTED_FIELDS if field != "access_restricted"}
        values["access_restricted"] = server.access is not None
        row = existing.get(server.name)
        access_changed: list[str] = []
        if server.access is not None:
            unknown_users = [name for name in server.access.users if name not in users]
            unknown_groups = [name for name in server.access.groups if name not in groups]
            if unknown_users:
                errors.append(f"Server {server.name!r}: access: unknown user(s): {', '.join(unknown_users)}.")
            if unknown_groups:
                errors.append(f"Server {server.name!r}: access: unknown group(s): {', '.join(unknown_groups)}.")
            allowed_users = [users[name] for name in server.access.users if name in users]
            allowed_groups = [groups[name] for name in server.access.groups if name in groups]
            access[server.name] = (allowed_users, allowed_groups)
            if row is not None:
                if {u.pk for u in row.allowed_users.all()} != {u.pk for u in allowed_users}:
                    access_changed.append("allowed_users")
                if {g.pk for g in row.allowed_groups.all()} != {g.pk for g in allowed_groups}:
                    access_changed.append("allowed_groups")
        # A masked value (from an export without secrets) keeps what is stored under that name.
        for field in SECRET_FIELDS:
            values[field], missing = unmask_values(values[field], getattr(row, field) if row else {})
            if missing:
                errors.append(
                    f"Server {server.name!r}: {field} {', '.join(missing)}: masked, and no stored value to keep."
                )
        secret = {"oauth_client_secret": values["oauth_client_secret"]} if values["oauth_client_secret"] else {}
        stored_secret = {"oauth_client_secret": row.oauth_client_secret} if row and row.oauth_client_secret else {}
        kept, missing = unmask_values(secret, stored_secret)
        values["oauth_client_secret"] = kept.get("oauth_client_secret", "")
        if missing:
            errors.append(f"Server {server.name!r}: oauth_client_secret: masked, and no stored value to keep.")
        if row is None:
            row = McpServer(name=server.name, **values)
            to_create.append(row)
        else:
            changed = [field for field, value in values.items() if getattr(row, field) != value]
            if not changed and not access_changed:
                unchanged.append(server.name)
                continue
            for field in changed:
                setattr(row, field, values[field])
            to_update.append((row, [*changed, *access_changed]))
        try:
            row.full_clean()
        except ValidationError as exc:
            errors.append(f"Server {server.name!r}: {_validation_messages(exc)}")
    if errors:
        raise ConfigFileError("\n".join(errors))

    if not dry_run:
        for row in to_create:
            row.save()
        for row, changed in to_update:
            row.save(update_fields=[*(f for f in changed if f not in ACCESS_LISTS), "updated_at"])
        for row in [*to_create, *(row for row, _changed in to_update)]:
            if row.name in access:
                allowed_users, allowed_groups = access[row.name]
                row.allowed_users.set(allowed_users)
                row.allowed_groups.set(allowed_groups)
    report = ImportReport(
        created=tuple(row.name for row in to_create),
        updated=tuple((row.name, tuple(changed)) for row, changed in to_update),
        unchanged=tuple(unchanged),
        dry_run=dry_run,
    )
    if report.changed and not dry_run:
        mcp_config_changed()
    return report


def mcp_health_snapshot() -> list[McpServerHealthSnapshot]:
    """Store one snapshot per configured server as this process's host sees it.

    Waits (bounded by MCP_READY_WAIT) for servers still making their first
    connection, so a freshly started worker does not record them all as "connecting".
    """
    host = get_host()
    host.ready()
    snapshots = [
        McpServerHealthSnapshot(
            server=status.name,
            status=status.status,
            tool_count=status.tool_count,
            last_error=status.last_error or "",
            last_call_ms=status.last_call_ms,
        )
        for status in host.statuses()
    ]
    return McpServerHealthSnapshot.objects.bulk_create(snapshots)
