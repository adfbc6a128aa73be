"""The MCP host: one per process, one connection per enabled McpServer row, tools aggregated and routed.

The host owns a dedicated event-loop thread. Every connection lives on that
loop, so async code (the chat engine, consumers, async views), sync code
(admin, management commands) and Celery all reach it the same way: async
callers await ``a*`` methods, sync callers use the blocking twins. Configuration
comes from the database on first use; ``reload()`` re-reads it and reconnects
only the servers whose configuration changed.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from django.conf import settings

from platform_site.db import run_db

from .config import ServerSpec
from .connection import ServerConnection, ServerUnavailable, describe, open_transport
from .models import McpServer
from .naming import namespace_tools
from .redaction import redactor_for
from .results import ServerStatus, ToolInfo, ToolResult

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownServer(LookupError):
    pass


class UnknownTool(LookupError):
    pass


class McpHost:
    def __init__(self, *, listen_for_changes: bool = True) -> None:
        self.connections: dict[str, ServerConnection] = {}
        self.disabled: dict[str, ServerSpec] = {}
        self._index: dict[str, tuple[str, str]] = {}
        self._catalog: dict[str, list[ToolInfo]] = {}
        self._listen_for_changes = listen_for_changes
        self._started = False
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="mcp-host", daemon=True)
        self._thread.start()
        self._start_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self.listening = threading.Event()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    # --- reaching the loop -----------------------------------------------------------------

    def _on_host_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the host loop from any event loop."""
        if self._on_host_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Block the calling thread (never the host loop's) until ``coro`` finishes there."""
        if self._on_host_loop():
            coro.close()
            raise RuntimeError("blocking MCP host call from the host's own loop")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("MCP host call timed out") from None

    # --- configuration -----------------------------------------------------------------------

    @staticmethod
    def _read_specs() -> list[ServerSpec]:
        return [ServerSpec.from_row(row) for row in McpServer.objects.all()]

    async def _ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self._apply(await run_db(self._read_specs))
            if self._listen_for_changes:
                from .broadcast import listen_for_config_changes

                self._listener = self._loop.create_task(listen_for_config_changes(self))
            self._started = True

    async def _apply(self, specs: list[ServerSpec]) -> list[str]:
        """Bring connections in line with ``specs``; the names of servers that were (re)started or stopped."""
        async with self._reload_lock:
            wanted = {spec.name: spec for spec in specs}
            enabled = {name for name, spec in wanted.items() if spec.enabled}
            # Readers never see a server missing: the new state is installed first, old connections stop after.
            self.disabled = {name: spec for name, spec in wanted.items() if name not in enabled}
            stale: list[ServerConnection] = []
            changed: list[str] = []
            for name, connection in list(self.connections.items()):
                if name not in enabled:
                    stale.append(self.connections.pop(name))
                    changed.append(name)
                elif connection.spec.fingerprint != wanted[name].fingerprint:
                    stale.append(connection)
                    self.connections[name] = self._connect(wanted[name])
                    changed.append(name)
                else:
                    connection.spec = wanted[name]  # at most display texts differ
            for name in sorted(enabled - set(self.connections)):
                self.connections[name] = self._connect(wanted[name])
                changed.append(name)
            self._rebuild_index()
            for connection in stale:
                await connection.stop()
            return sorted(changed)

    def _connect(self, spec: ServerSpec) -> ServerConnection:
        connection = ServerConnection(
            spec,
            on_tools_changed=lambda _connection: self._rebuild_index(),
            connect_timeout=settings.MCP_CONNECT_TIMEOUT,
            max_concurrent_calls=settings.MCP_MAX_CONCURRENT_CALLS,
            backoff_initial=settings.MCP_RESTART_BACKOFF_INITIAL,
            backoff_max=settings.MCP_RESTART_BACKOFF_MAX,
            mode=settings.MCP_PROTOCOL_MODE,
        )
        connection.start()
        return connection

    def _rebuild_index(self) -> None:
        pairs = [(name, tool.name) for name, connection in self.connections.items() for tool in connection.tools]
        names = namespace_tools(pairs)
        self._index = {offered: pair for pair, offered in names.items()}
        self._catalog = {
            name: [ToolInfo.from_mcp(name, names[(name, tool.name)], tool) for tool in connection.tools]
            for name, connection in self.connections.items()
        }

    async def areload(self) -> list[str]:
        """Re-read every row; reconnect only servers whose configuration changed. Returns their names."""

        async def reload() -> list[str]:
            await self._ensure_started()
            return await self._apply(await run_db(self._read_specs))

        return await self._run(reload())

    async def aconfigure(self, specs: list[ServerSpec]) -> list[str]:
        """Serve exactly ``specs`` instead of the database rows (benchmarks, embedding)."""

        async def configure() -> list[str]:
            self._started = True
            return await self._apply(specs)

        return await self._run(configure())

    def start(self) -> None:
        """Start connecting every configured server now, without waiting (process start-up)."""
        future = asyncio.run_coroutine_threadsafe(self._ensure_started(), self._loop)
        future.add_done_callback(_log_start_failure)

    def request_reload(self) -> concurrent.futures.Future[list[str]]:
        """Schedule a reload without waiting for it (safe from any thread)."""
        return asyncio.run_coroutine_threadsafe(self.areload(), self._loop)

    async def areconnect(self, name: str) -> None:
        async def reconnect() -> None:
            await self._ensure_started()
            self._connection(name).reconnect()

        await self._run(reconnect())

    async def await_ready(self, seconds: float | None = None) -> None:
        """Wait (bounded) until no server is still making its first connection."""

        async def wait() -> None:
            await self._ensure_started()
            deadline = time.monotonic() + (settings.MCP_READY_WAIT if seconds is None else seconds)
            for connection in list(self.connections.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if connection.status == "connecting":
                    await connection.wait_connected(remaining)

        await self._run(wait())

    # --- reading state -------------------------------------------------------------------------

    def _connection(self, name: str) -> ServerConnection:
        connection = self.connections.get(name)
        if connection is None:
            if name in self.disabled:
                raise ServerUnavailable(name, "disabled", f"MCP server {name!r} is disabled")
            raise UnknownServer(name)
        return connection

    async def astatuses(self) -> list[ServerStatus]:
        async def statuses() -> list[ServerStatus]:
            await self._ensure_started()
            live = [connection.snapshot() for connection in self.connections.values()]
            off = [ServerStatus(name=name, status="disabled") for name in self.disabled]
            return sorted(live + off, key=lambda status: status.name)

        return await self._run(statuses())

    async def atools(self, servers: list[str] | None = None) -> list[ToolInfo]:
        """Tools offered to models, from the cached catalog (never re-listed per request)."""

        async def tools() -> list[ToolInfo]:
            await self._ensure_started()
            chosen = self._catalog if servers is None else {n: t for n, t in self._catalog.items() if n in servers}
            return [tool for name in sorted(chosen) for tool in chosen[name]]

        return await self._run(tools())

    def resolve(self, namespaced_name: str) -> tuple[str, str]:
        pair = self._index.get(namespaced_name)
        if pair is None:
            raise UnknownTool(namespaced_name)
        return pair

    # --- acting ----------------------------------------------------------------------------------

    async def acall_tool(self, namespaced_name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call a tool by the name models see. Every failure is an error result, never an exception."""

        async def call() -> ToolResult:
            await self._ensure_started()
            try:
                server, tool = self.resolve(namespaced_name)
            except UnknownTool:
                return ToolResult.error("", namespaced_name, f"Unknown tool {namespaced_name!r}")
            return await self._call(server, tool, arguments)

        return await self._run(call())

    async def acall_server_tool(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call ``tool`` on ``server`` by the server's own names; UnknownServer/UnknownTool when absent."""

        async def call() -> ToolResult:
            await self._ensure_started()
            connection = self._connection(server)
            if connection.status == "connected" and not any(t.name == tool for t in connection.tools):
                raise UnknownTool(tool)
            return await self._call(server, tool, arguments)

        return await self._run(call())

    async def _call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolResult:
        try:
            connection = self._connection(server)
        except (UnknownServer, ServerUnavailable) as exc:
            return ToolResult.error(server, tool, getattr(exc, "message", f"Unknown MCP server {server!r}"))
        result, error, duration = await connection.call_tool(tool, arguments)
        if error is not None or result is None:
            return ToolResult.error(server, tool, error or "no result", duration)
        return ToolResult.from_mcp(server, tool, result, duration)

    async def arequest(self, server: str, what: str, call: Any) -> Any:
        """Run ``call(client)`` against one server (resources, prompts)."""

        async def request() -> Any:
            await self._ensure_started()
            return await self._connection(server).request(what, call)

        return await self._run(request())

    async def aprobe(self, spec: ServerSpec) -> dict[str, Any]:
        """Connect afresh (outside the pool), list tools, disconnect: the admin's "Test connection"."""

        async def probe() -> dict[str, Any]:
            from mcp import Client

            from .connection import CLIENT_INFO

            started = time.perf_counter()
            try:
                async with asyncio.timeout(settings.MCP_CONNECT_TIMEOUT):
                    async with open_transport(spec) as transport, Client(transport, client_info=CLIENT_INFO) as client:
                        listing = await client.list_tools(cache_mode="bypass")
                        info = client.server_info
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                error = redactor_for(spec)(describe(exc))
                return {"ok": False, "error": error, "latency_ms": _ms(started), "tools": []}
            return {
                "ok": True,
                "error": None,
                "latency_ms": _ms(started),
                "server": f"{info.name} {info.version}" if info else None,
                "tools": [tool.name for tool in listing.tools],
            }

        return await self._run(probe())

    async def aclose(self) -> None:
        async def close() -> None:
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(self._listener, return_exceptions=True), 5)
            for connection in list(self.connections.values()):
                await connection.stop()
            self.connections.clear()

        await self._run(close())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run_sync(self.aclose(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    # --- blocking twins for sync callers (admin, commands, Celery) -------------------------------

    def statuses(self) -> list[ServerStatus]:
        return self._run_sync(self.astatuses(), timeout=30)

    def tools(self, servers: list[str] | None = None) -> list[ToolInfo]:
        return self._run_sync(self.atools(servers), timeout=30)

    def call_tool(self, namespaced_name: str, arguments: dict[str, Any]) -> ToolResult:
        return self._run_sync(self.acall_tool(namespaced_name, arguments))

    def reload(self) -> list[str]:
        return self._run_sync(self.areload(), timeout=60)

    def reconnect(self, name: str) -> None:
        self._run_sync(self.areconnect(name), timeout=30)

    def probe(self, spec: ServerSpec) -> dict[str, Any]:
        return self._run_sync(self.aprobe(spec))

    def ready(self, seconds: float | None = None) -> None:
        self._run_sync(self.await_ready(seconds))


def _log_start_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("MCP host: reading the server configuration failed", exc_info=future.exception())


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


_host: McpHost | None = None
_host_lock = threading.Lock()


def get_host() -> McpHost:
    """This process's MCP host, created on first use."""
    global _host
    if _host is None:
        with _host_lock:
            if _host is None:
                _host = McpHost()
    return _host


def host_start_at_boot() -> None:
    """A web or worker process starts: connect the MCP servers now, not on the first request."""
    if settings.MCP_CONNECT_AT_START:
        get_host().start()


def current_host() -> McpHost | None:
    """The host if this process has started one (broadcasts need not start it)."""
    return _host


def reset_host() -> None:
    """Close this process's host (tests, shutdown); the next get_host() makes a new one."""
    global _host
    with _host_lock:
        host, _host = _host, None
    if host is not None:
        host.close()
