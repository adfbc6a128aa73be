"""Reads of MCP servers: configuration rows joined with this worker's live host state.

The host is reached through these functions (and services), never from the
interface layer directly. Host errors become the API's domain exceptions here:
why a server is down is told to staff only, and a server's own error texts are
redacted of its secrets.
"""

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mcp import MCPError

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import NotFound, ServiceUnavailable, UpstreamError, ValidationFailed

from .config import ServerSpec
from .connection import ServerUnavailable
from .host import UnknownServer, UnknownTool, get_host
from .models import McpServer
from .redaction import Redactor, redactor_for
from .results import ServerStatus, ToolInfo

RESOURCE_NOT_FOUND = -32002
CONNECTION_CLOSED = -32000
INVALID_PARAMS = -32602


@dataclass(frozen=True)
class ServerView:
    server: McpServer
    status: ServerStatus

    @cached_property
    def redact(self) -> Redactor:
        """Blanks this server's secrets out of a text."""
        return redactor_for(ServerSpec.from_row(self.server))


def mcp_unavailable_error(*, name: str, status: str, reason: str | None) -> ServiceUnavailable:
    """503 ``mcp_server_unavailable``; pass a ``reason`` (already redacted) only when staff may read it."""
    detail = f": {reason}" if reason else ""
    return ServiceUnavailable(
        f"MCP server {name!r} is {status}{detail}",
        code="mcp_server_unavailable",
        details={"status": status, "reason": reason},
    )


def mcp_servers_resolve(*, names: list[str]) -> list[McpServer]:
    """The rows for ``names``, or ValidationFailed ``unknown_mcp_server`` naming those that do not exist."""
    servers = list(McpServer.objects.filter(name__in=names))
    missing = sorted(set(names) - {server.name for server in servers})
    if missing:
        raise ValidationFailed(
            f"Unknown MCP server(s): {', '.join(missing)}.", code="unknown_mcp_server", details={"mcp_servers": missing}
        )
    return servers


async def mcp_server_views() -> list[ServerView]:
    rows = await run_db(lambda: {row.name: row for row in McpServer.objects.all()})
    statuses = {status.name: status for status in await get_host().astatuses()}
    return [
        ServerView(server=row, status=statuses.get(name) or ServerStatus(name=name, status="connecting"))
        for name, row in sorted(rows.items())
    ]


async def mcp_server_view(*, name: str) -> ServerView:
    row = await run_db(lambda: McpServer.objects.filter(name=name).first())
    if row is None:
        raise NotFound(f"Unknown MCP server {name!r}.", code="unknown_mcp_server")
    statuses = {status.name: status for status in await get_host().astatuses()}
    return ServerView(server=row, status=statuses.get(name) or ServerStatus(name=name, status="connecting"))


async def mcp_host_summary() -> dict[str, Any]:
    statuses = await get_host().astatuses()
    counts = dict.fromkeys(("connected", "connecting", "error", "disabled"), 0)
    for status in statuses:
        counts[status.status] += 1
    return {"servers": counts, "total_servers": len(statuses), "total_tools": sum(s.tool_count for s in statuses)}


async def mcp_tools(*, user: User, server: str | None = None) -> list[ToolInfo]:
    host = get_host()
    if server is None:
        await host.await_ready()
        return await host.atools()
    view = await mcp_server_view(name=server)
    if view.status.status == "connecting":
        await host.await_ready()
        view = await mcp_server_view(name=server)
    if view.status.status != "connected":
        reason = view.status.last_error if user.is_staff else None
        raise mcp_unavailable_error(name=server, status=view.status.status, reason=reason)
    return await host.atools([server])


async def _arequest(server: str, what: str, call: Any) -> Any:
    host = get_host()
    try:
        return await host.arequest(server, what, call)
    except MCPError as exc:
        if exc.code != CONNECTION_CLOSED:
            raise
    # The connection went away under the request (a reconnect or reload restarts it). These requests only
    # read: wait for the new connection (MCP_READY_WAIT at most) and ask once more.
    await host.await_ready()
    try:
        return await host.arequest(server, what, call)
    except MCPError as exc:
        if exc.code == CONNECTION_CLOSED:
            raise ServerUnavailable(server, "error", f"MCP server {server!r} lost its connection.") from exc
        raise


async def mcp_request(*, user: User, server: str, what: str, call: Any) -> Any:
    """A resources/prompts request to one server, with host errors mapped to API errors."""
    view = await mcp_server_view(name=server)
    try:
        return await _arequest(server, what, call)
    except UnknownServer as exc:
        raise NotFound(f"Unknown MCP server {server!r}.", code="unknown_mcp_server") from exc
    except ServerUnavailable as exc:
        reason = exc.reason if user.is_staff else None
        raise mcp_unavailable_error(name=server, status=exc.status, reason=reason) from exc
    except MCPError as exc:
        # The server's own words: they may quote what it was configured with.
        message = view.redact(exc.message)
        if exc.code == RESOURCE_NOT_FOUND or "not found" in message.lower() or "unknown" in message.lower():
            raise NotFound(message, code="mcp_not_found") from exc
        if exc.code == INVALID_PARAMS:
            raise ValidationFailed(message, code="mcp_invalid_params") from exc
        raise UpstreamError(message, details={"mcp_code": exc.code}) from exc
    except TimeoutError as exc:
        raise UpstreamError(f"MCP server {server!r} did not answer in time.", code="mcp_timeout") from exc


__all__ = [
    "ServerView",
    "UnknownTool",
    "mcp_host_summary",
    "mcp_request",
    "mcp_server_view",
    "mcp_server_views",
    "mcp_servers_resolve",
    "mcp_tools",
    "mcp_unavailable_error",
]
