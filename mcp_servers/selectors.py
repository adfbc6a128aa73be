"""Reads of MCP servers: configuration rows joined with this worker's live host state.

The host is reached through these functions (and services), never from the
interface layer directly. Host errors become the API's domain exceptions here.
"""

from dataclasses import dataclass
from typing import Any

from mcp import MCPError

from platform_site.db import run_db
from platform_site.exceptions import NotFound, ServiceUnavailable, UpstreamError, ValidationFailed

from .connection import ServerUnavailable
from .host import UnknownServer, UnknownTool, get_host
from .models import McpServer
from .results import ServerStatus, ToolInfo

RESOURCE_NOT_FOUND = -32002
CONNECTION_CLOSED = -32000
INVALID_PARAMS = -32602


@dataclass(frozen=True)
class ServerView:
    server: McpServer
    status: ServerStatus


def _unavailable(status: ServerStatus) -> ServiceUnavailable:
    reason = f": {status.last_error}" if status.last_error else ""
    return ServiceUnavailable(
        f"MCP server {status.name!r} is {status.status}{reason}",
        code="mcp_server_unavailable",
        details={"status": status.status, "reason": status.last_error},
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


async def mcp_tools(*, server: str | None = None) -> list[ToolInfo]:
    host = get_host()
    if server is None:
        await host.await_ready()
        return await host.atools()
    view = await mcp_server_view(name=server)
    if view.status.status == "connecting":
        await host.await_ready()
        view = await mcp_server_view(name=server)
    if view.status.status != "connected":
        raise _unavailable(view.status)
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


async def mcp_request(*, server: str, what: str, call: Any) -> Any:
    """A resources/prompts request to one server, with host errors mapped to API errors."""
    await mcp_server_view(name=server)
    try:
        return await _arequest(server, what, call)
    except UnknownServer as exc:
        raise NotFound(f"Unknown MCP server {server!r}.", code="unknown_mcp_server") from exc
    except ServerUnavailable as exc:
        raise ServiceUnavailable(
            exc.message, code="mcp_server_unavailable", details={"status": exc.status, "reason": exc.message}
        ) from exc
    except MCPError as exc:
        if exc.code == RESOURCE_NOT_FOUND or "not found" in exc.message.lower() or "unknown" in exc.message.lower():
            raise NotFound(exc.message, code="mcp_not_found") from exc
        if exc.code == INVALID_PARAMS:
            raise ValidationFailed(exc.message, code="mcp_invalid_params") from exc
        raise UpstreamError(exc.message, details={"mcp_code": exc.code}) from exc
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
]
