"""Writes of MCP server configuration. Every change reaches every worker's host after commit."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from platform_site.exceptions import NotFound

from .broadcast import broadcast_config_changed
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


async def mcp_host_reload() -> list[str]:
    return await get_host().areload()


async def mcp_tool_call(*, server: str, tool: str, arguments: dict[str, Any]) -> ToolResult:
    """A direct (staff) tool call by the server's own tool name. Tool failures are error results.

    Staff only: a server that is down says why (its redacted last error).
    """
    view = await mcp_server_view(name=server)
    if view.status.status in ("disabled", "error"):
        raise mcp_unavailable_error(name=server, status=view.status.status, reason=view.status.last_error)
    try:
        return await get_host().acall_server_tool(server, tool, arguments)
    except UnknownServer as exc:
        raise NotFound(f"Unknown MCP server {server!r}.", code="unknown_mcp_server") from exc
    except UnknownTool as exc:
        raise NotFound(f"MCP server {server!r} has no tool {tool!r}.", code="unknown_tool") from exc
    except ServerUnavailable as exc:
        raise mcp_unavailable_error(name=server, status=exc.status, reason=exc.reason) from exc


# The McpServer fields a configuration file sets; anything else (tool_allowlist) is left as it is.
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
    existing = {row.name: row for row in McpServer.objects.select_for_update().filter(name__in=names)}

    to_create: list[McpServer] = []
    to_update: list[tuple[McpServer, list[str]]] = []
    unchanged: list[str] = []
    errors: list[str] = []
    for server in servers:
        values = {field: getattr(server, field) for field in IMPORTED_FIELDS}
        row = existing.get(server.name)
        # A masked value (from an export without secrets) keeps what is stored under that name.
        for field in SECRET_FIELDS:
            values[field], missing = unmask_values(values[field], getattr(row, field) if row else {})
            if missing:
                errors.append(
                    f"Server {server.name!r}: {field} {', '.join(missing)}: masked, and no stored value to keep."
                )
        if row is None:
            row = McpServer(name=server.name, **values)
            to_create.append(row)
        else:
            changed = [field for field, value in values.items() if getattr(row, field) != value]
            if not changed:
                unchanged.append(server.name)
                continue
            for field in changed:
                setattr(row, field, values[field])
            to_update.append((row, changed))
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
            row.save(update_fields=[*changed, "updated_at"])
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
