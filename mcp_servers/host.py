"""The MCP host: one per process, one connection per enabled McpServer row, tools aggregated and routed.

A per-user server (one whose configuration uses ``{{user.id}}`` or ``{{user.username}}``, or that
declares ``user_vars``) gets one connection per (server, user) instead, started on that user's first use,
closed after MCP_USER_CONNECTION_IDLE_SECONDS unused, and at most MCP_USER_CONNECTIONS_MAX of them per
process (the least recently used one not busy with a call is closed first). A server with ``user_vars``
reads the user's values from the database on each use: when they changed (in any worker), the user's
connection is started again with the new ones.

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
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Concatenate, TypeVar

from django.conf import settings
from mcp import Client, MCPError
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    CONNECTION_CLOSED,
    BlobResourceContents,
    GetPromptResult,
    PaginatedResult,
    Prompt,
    Resource,
    ResourceTemplate,
    TextResourceContents,
)

from platform_site.db import run_db

from .config import LIVE_FIELDS, ConfigError, NeedsSignIn, ServerSpec, UserContext
from .connection import CLIENT_INFO, ServerConnection, ServerUnavailable, describe, open_transport
from .credentials import credential_values_for
from .interactions import CallContext
from .models import McpServer
from .naming import namespace_tools
from .oauth import oauth_grants_for
from .redaction import redactor_for
from .results import ServerStatus, ToolInfo, ToolResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Pages followed when listing resources or prompts: a server whose cursors never end is cut off there.
MAX_PAGES = 100


class UnknownServer(LookupError):
    pass


class UnknownTool(LookupError):
    pass


class UnknownPrompt(LookupError):
    pass


class ServerRefused(Exception):
    """The server answered a read (resources, prompts) with an error: its JSON-RPC ``code`` and own ``message``."""

    def __init__(self, server: str, code: int, message: str) -> None:
        super().__init__(f"MCP server {server!r} answered {code}: {message}")
        self.code = code
        self.message = message


class PromptArgumentsMissing(ValueError):
    """``aget_prompt`` without a value for each of the prompt's required arguments (named in ``missing``)."""

    def __init__(self, prompt: str, missing: list[str]) -> None:
        super().__init__(f"prompt {prompt!r} needs: {', '.join(missing)}")
        self.missing = missing


@dataclass(frozen=True)
class ResourceListing:
    """A server's resources and resource templates (both empty when it offers no resources)."""

    resources: list[Resource]
    resource_templates: list[ResourceTemplate]


def on_host_loop[**P, T](
    method: "Callable[Concatenate[McpHost, P], Coroutine[Any, Any, T]]",
) -> "Callable[Concatenate[McpHost, P], Coroutine[Any, Any, T]]":
    """Make an async host method run on the host's loop, whichever event loop awaits it.

    Every connection lives on that loop (the SDK's cancel scopes must be entered and left in one task), so
    every public ``a*`` method of the host is wrapped in this; on the host's own loop it just runs.
    Cancelling the await cancels the work on the host's loop too.
    """

    @functools.wraps(method)
    async def run(self: "McpHost", /, *args: P.args, **kwargs: P.kwargs) -> T:
        coro = method(self, *args, **kwargs)
        if self._on_host_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    return run


def blocking[**P, T](
    method: "Callable[Concatenate[McpHost, P], Coroutine[Any, Any, T]]",
    *,
    timeout: float | Callable[[], float] | None = None,
) -> "Callable[Concatenate[McpHost, P], T]":
    """The blocking twin of an async host method, for sync callers (admin, management commands, Celery).

    It blocks the calling thread (never the host loop's) until the method finishes on the host's loop;
    TimeoutError after ``timeout`` seconds (a callable: read at each call), when one is given.
    """

    def run(self: "McpHost", /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run_sync(method(self, *args, **kwargs), timeout() if callable(timeout) else timeout)

    run.__doc__ = f"``{method.__name__}``, blocking the calling thread until it is done."
    return run


@dataclass
class _UserConnection:
    """A per-user server's connection for one user, with what the LRU cap and the idle timeout need."""

    connection: ServerConnection  # its spec's fingerprint covers the user's values that went in
    template_fingerprint: str  # of the server's spec before the user's values went in
    last_used: float = field(default_factory=time.monotonic)
    calls_in_flight: int = 0

    def touch(self) -> None:
        self.last_used = time.monotonic()


class McpHost:
    def __init__(self, *, listen_for_changes: bool = True) -> None:
        """``listen_for_changes``: once started, run the config listener the app wired in (``host_listen_with``)."""
        self.connections: dict[str, ServerConnection] = {}  # shared servers
        self.disabled: dict[str, ServerSpec] = {}
        self.per_user: dict[str, ServerSpec] = {}  # enabled per-user servers, as configured
        # (server, user id) -> connection, least recently used first.
        self.user_connections: OrderedDict[tuple[str, int], _UserConnection] = OrderedDict()
        self._stopping: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
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
            if self._listen_for_changes and _config_listener is not None:
                self._listener = self._loop.create_task(_config_listener(self))
            self._started = True

    async def _apply(self, specs: list[ServerSpec]) -> list[str]:
        """Bring connections in line with ``specs``; the names of servers that were (re)started or stopped."""
        async with self._reload_lock:
            wanted = {spec.name: spec for spec in specs}
            enabled = {name for name, spec in wanted.items() if spec.enabled and not spec.per_user}
            per_user = {name: spec for name, spec in wanted.items() if spec.enabled and spec.per_user}
            # Readers never see a server missing: the new state is installed first, old connections stop after.
            self.disabled = {name: spec for name, spec in wanted.items() if not spec.enabled}
            stale: list[ServerConnection] = []
            changed: list[str] = [
                name
                for name in set(per_user) | set(self.per_user)
                if name not in per_user
                or name not in self.per_user
                or per_user[name].fingerprint != self.per_user[name].fingerprint
            ]
            self.per_user = per_user
            for key, user_connection in list(self.user_connections.items()):
                spec = per_user.get(key[0])
                if spec is None or spec.fingerprint != user_connection.template_fingerprint:
                    stale.append(self.user_connections.pop(key).connection)
                else:  # the user's own values stay; a new log level or new roots are passed on
                    live = {name: getattr(spec, name) for name in LIVE_FIELDS}
                    user_connection.connection.update_spec(replace(user_connection.connection.spec, **live))
            for name, connection in list(self.connections.items()):
                if name not in enabled:
                    stale.append(self.connections.pop(name))
                    changed.append(name)
                elif connection.spec.fingerprint != wanted[name].fingerprint:
                    stale.append(connection)
                    self.connections[name] = self._connect(wanted[name])
                    changed.append(name)
                else:
                    connection.update_spec(wanted[name])  # display texts, or what it is told of without reconnecting
            for name in sorted(enabled - set(self.connections)):
                self.connections[name] = self._connect(wanted[name])
                changed.append(name)
            self._rebuild_index()
            for connection in stale:
                await connection.stop()
            return sorted(set(changed))

    def _connect(self, spec: ServerSpec, *, shared: bool = True) -> ServerConnection:
        connection = ServerConnection(
            spec,
            # Per-user servers' tools are named when a user's tools are asked for (_user_names).
            on_tools_changed=lambda _connection: self._rebuild_index() if shared else None,
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

    @on_host_loop
    async def areload(self) -> list[str]:
        """Re-read every row; reconnect only servers whose configuration changed. Returns their names."""
        await self._ensure_started()
        return await self._apply(await run_db(self._read_specs))

    @on_host_loop
    async def aconfigure(self, specs: list[ServerSpec]) -> list[str]:
        """Serve exactly ``specs`` instead of the database rows (benchmarks, embedding)."""
        self._started = True
        return await self._apply(specs)

    def start(self) -> None:
        """Start connecting every configured server now, without waiting (process start-up)."""
        future = asyncio.run_coroutine_threadsafe(self._ensure_started(), self._loop)
        future.add_done_callback(_log_start_failure)

    def request_reload(self) -> concurrent.futures.Future[list[str]]:
        """Schedule a reload without waiting for it (safe from any thread)."""
        return asyncio.run_coroutine_threadsafe(self.areload(), self._loop)

    @on_host_loop
    async def areconnect(self, name: str) -> None:
        """Reconnect a server; a per-user server's connections close, to start again on next use."""
        await self._ensure_started()
        if name in self.per_user:
            for key in [key for key in self.user_connections if key[0] == name]:
                self._stop_later(self.user_connections.pop(key).connection)
            return
        self._connection(name).reconnect()

    @on_host_loop
    async def aclose_user_connection(self, name: str, user_id: int) -> None:
        """Close ``user_id``'s connection to the per-user server ``name`` in this process, if there is one."""
        user_connection = self.user_connections.pop((name, user_id), None)
        if user_connection is not None:
            self._stop_later(user_connection.connection)

    def request_close_user_connection(self, name: str, user_id: int) -> None:
        """Schedule ``aclose_user_connection`` without waiting for it (safe from any thread)."""
        asyncio.run_coroutine_threadsafe(self.aclose_user_connection(name, user_id), self._loop)

    @on_host_loop
    async def await_ready(self, seconds: float | None = None) -> None:
        """Wait (bounded) until no server is still making its first connection."""
        await self._ensure_started()
        deadline = time.monotonic() + (settings.MCP_READY_WAIT if seconds is None else seconds)
        for connection in list(self.connections.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if connection.status == "connecting":
                await connection.wait_connected(remaining)

    # --- reading state -------------------------------------------------------------------------

    def _connection(self, name: str) -> ServerConnection:
        connection = self.connections.get(name)
        if connection is None:
            if name in self.disabled:
                raise ServerUnavailable(name, "disabled", f"MCP server {name!r} is disabled")
            raise UnknownServer(name)
        return connection

    @on_host_loop
    async def astatuses(self) -> list[ServerStatus]:
        """Each server's state in this process; a per-user server is "per-user" (its users' states differ)."""
        await self._ensure_started()
        live = [connection.snapshot() for connection in self.connections.values()]
        off = [ServerStatus(name=name, status="disabled") for name in self.disabled]
        per_user = [ServerStatus(name=name, status="per-user") for name in self.per_user]
        return sorted(live + off + per_user, key=lambda status: status.name)

    @on_host_loop
    async def auser_status(self, name: str, user: Any) -> ServerStatus:
        """``user``'s connection to the per-user server ``name``, started if need be (waits MCP_READY_WAIT)."""
        await self._ensure_started()
        if name not in self.per_user:
            return self._connection(name).snapshot()
        try:
            user_connection = self._user_connection(name, (await self._contexts(user, [name]))[name])
        except NeedsSignIn:
            return ServerStatus(name=name, status="needs-sign-in")
        except ConfigError as exc:
            return ServerStatus(name=name, status="error", last_error=f"configuration: {exc}")
        await user_connection.connection.wait_connected(settings.MCP_READY_WAIT)
        return user_connection.connection.snapshot()

    @on_host_loop
    async def atools(self, servers: list[str] | None = None, *, user: Any = None) -> list[ToolInfo]:
        """Tools offered to models, from the cached catalogs (never re-listed per request).

        With a ``user``, per-user servers' tools come from that user's connections, started now if
        they are not running (each waits MCP_READY_WAIT at most); without one, they are left out.
        """
        await self._ensure_started()
        chosen = self._catalog if servers is None else {n: t for n, t in self._catalog.items() if n in servers}
        if user is None:
            return [tool for name in sorted(chosen) for tool in chosen[name]]
        wanted = [name for name in sorted(self.per_user) if servers is None or name in servers]
        contexts = await self._contexts(user, wanted)
        started = []
        for name, context in contexts.items():
            try:
                started.append(self._user_connection(name, context))
            except ConfigError as exc:
                logger.warning("MCP server %s cannot run for user %s: %s", name, context.id, exc)
        waiting = [c.connection.wait_connected(settings.MCP_READY_WAIT) for c in started]
        await asyncio.gather(*waiting)
        names = self._user_names(user.pk)
        per_user = {
            c.connection.spec.name: [
                ToolInfo.from_mcp(c.connection.spec.name, names[(c.connection.spec.name, tool.name)], tool)
                for tool in c.connection.tools
            ]
            for c in started
        }
        every = chosen | per_user
        return [tool for name in sorted(every) for tool in every[name]]

    async def _contexts(self, user: Any, names: list[str]) -> dict[str, UserContext]:
        """For each per-user server in ``names``: ``user`` with their own values of its user_vars (one query)."""
        context = UserContext.of(user)
        with_vars = [name for name in names if name in self.per_user and self.per_user[name].user_vars]
        with_oauth = [name for name in names if name in self.per_user and self.per_user[name].auth == "oauth"]
        if not with_vars and not with_oauth:
            return dict.fromkeys(names, context)
        values = await run_db(credential_values_for, user_id=context.id, server_names=with_vars) if with_vars else {}
        grants = await run_db(oauth_grants_for, user_id=context.id, server_names=with_oauth) if with_oauth else {}
        return {
            name: UserContext.of(user, values.get(name), grants.get(name, ""))
            if name in with_vars or name in with_oauth
            else context
            for name in names
        }

    def _user_connection(self, name: str, user: UserContext) -> _UserConnection:
        """``user``'s connection to the per-user server ``name``, started if need be; marked as just used.

        A connection started with other values (the user changed theirs, or their name) is replaced; one
        the user can no longer have (a required value cleared) is closed.
        """
        key = (name, user.id)
        template = self.per_user.get(name)
        if template is None:  # removed while the user's values were read
            raise ConfigError(f"MCP server {name!r} is no longer configured as a per-user server")
        try:
            spec = template.for_user(user)  # ConfigError before anything is started
        except ConfigError:
            # E.g. the user cleared a required value: a connection still running with the old ones goes.
            stale = self.user_connections.pop(key, None)
            if stale is not None:
                self._stop_later(stale.connection)
            raise
        user_connection = self.user_connections.get(key)
        if user_connection is not None and user_connection.connection.spec.fingerprint != spec.fingerprint:
            self._stop_later(self.user_connections.pop(key).connection)
            user_connection = None
        if user_connection is None:
            self._close_least_recently_used(keep=settings.MCP_USER_CONNECTIONS_MAX - 1)
            user_connection = _UserConnection(self._connect(spec, shared=False), template.fingerprint)
            self.user_connections[key] = user_connection
            if self._reaper is None or self._reaper.done():
                self._reaper = self._loop.create_task(self._close_idle())
        self.user_connections.move_to_end(key)
        user_connection.touch()
        return user_connection

    def _close_least_recently_used(self, *, keep: int) -> None:
        # A connection in the middle of a call is passed over; the cap may be exceeded until it ends.
        for key in list(self.user_connections):
            if len(self.user_connections) <= max(keep, 0):
                break
            if not self.user_connections[key].calls_in_flight:
                self._stop_later(self.user_connections.pop(key).connection)

    async def _close_idle(self) -> None:
        """Close per-user connections unused for MCP_USER_CONNECTION_IDLE_SECONDS; ends when none are left."""
        while self.user_connections:
            idle = settings.MCP_USER_CONNECTION_IDLE_SECONDS
            await asyncio.sleep(min(max(idle / 4, 0.05), 30) if idle > 0 else 30)
            if idle <= 0:
                continue
            cutoff = time.monotonic() - idle
            for key, user_connection in list(self.user_connections.items()):
                if not user_connection.calls_in_flight and user_connection.last_used <= cutoff:
                    self._stop_later(self.user_connections.pop(key).connection)

    def _stop_later(self, connection: ServerConnection) -> None:
        # Stopping waits for the process to exit; nobody who wanted a connection should wait for that.
        task = self._loop.create_task(connection.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _user_names(self, user_id: int) -> dict[tuple[str, str], str]:
        """Offered names of the shared tools and of ``user_id``'s per-user tools, named together."""
        pairs = [(name, tool.name) for name, connection in self.connections.items() for tool in connection.tools]
        pairs += [
            (name, tool.name)
            for (name, owner), user_connection in self.user_connections.items()
            if owner == user_id
            for tool in user_connection.connection.tools
        ]
        return namespace_tools(pairs)

    def resolve(self, namespaced_name: str) -> tuple[str, str]:
        pair = self._index.get(namespaced_name)
        if pair is None:
            raise UnknownTool(namespaced_name)
        return pair

    # --- acting ----------------------------------------------------------------------------------

    @on_host_loop
    async def acall_tool(
        self,
        namespaced_name: str,
        arguments: dict[str, Any],
        *,
        user: Any = None,
        on_progress: ProgressFnT | None = None,
        interaction: CallContext | None = None,
    ) -> ToolResult:
        """Call a tool by the name models see. Every failure is an error result, never an exception.

        A per-user server's tool is called on ``user``'s connection (started again if it was closed).
        ``on_progress(progress, total, message)`` (async) gets the server's progress notices, on the host's
        loop: hop back to your own. Cancelling the await tells the server (``notifications/cancelled``).
        ``interaction`` answers the server's sampling and elicitation requests during the call.
        """
        await self._ensure_started()
        try:
            server, tool = self.resolve(namespaced_name)
        except UnknownTool:
            # Offered names keep their "<server>__" prefix whole, and server names cannot end in "_".
            server = next((name for name in self.per_user if namespaced_name.startswith(f"{name}__")), "")
            if user is None or not server:
                return ToolResult.error("", namespaced_name, f"Unknown tool {namespaced_name!r}")
            context = (await self._contexts(user, [server]))[server]

            def offered(_connection: ServerConnection) -> str | None:
                names = self._user_names(context.id)
                return next((t for (s, t), name in names.items() if s == server and name == namespaced_name), None)

            return await self._call_for_user(
                server,
                context,
                arguments,
                asked=namespaced_name,
                pick=offered,
                on_progress=on_progress,
                interaction=interaction,
            )
        return await self._call(server, tool, arguments, on_progress=on_progress, interaction=interaction)

    async def _call_for_user(
        self,
        server: str,
        user: UserContext,
        arguments: dict[str, Any],
        *,
        asked: str,
        pick: Callable[[ServerConnection], str | None],
        on_progress: ProgressFnT | None = None,
        interaction: CallContext | None = None,
    ) -> ToolResult:
        """Call, on ``user``'s connection to ``server``, the tool ``pick`` chooses once it is connected."""
        try:
            user_connection = self._user_connection(server, user)
        except ConfigError as exc:
            logger.warning("MCP server %s cannot run for user %s: %s", server, user.id, exc)
            return ToolResult.error(server, asked, f"MCP server {server!r} cannot run for this user")
        connection = user_connection.connection
        user_connection.calls_in_flight += 1
        try:
            if not await connection.wait_connected(connection.spec.timeout_seconds):
                return ToolResult.error(server, asked, f"MCP server {server!r} is {connection.status}")
            tool = pick(connection)
            if tool is None:
                return ToolResult.error(server, asked, f"Unknown tool {asked!r}")
            return await self._call_on(
                connection, server, tool, arguments, on_progress=on_progress, interaction=interaction
            )
        finally:
            user_connection.calls_in_flight -= 1
            user_connection.touch()

    @on_host_loop
    async def acall_server_tool(
        self, server: str, tool: str, arguments: dict[str, Any], *, user: Any = None
    ) -> ToolResult:
        """Call ``tool`` on ``server`` by the server's own names; UnknownServer/UnknownTool when absent.

        A per-user server is called on ``user``'s connection; without a user it is unavailable.
        """
        await self._ensure_started()
        if server in self.per_user:
            if user is None:
                raise ServerUnavailable(server, "per-user", f"MCP server {server!r} runs per user")

            def known(connection: ServerConnection) -> str:
                if not any(t.name == tool for t in connection.tools):
                    raise UnknownTool(tool)
                return tool

            context = (await self._contexts(user, [server]))[server]
            return await self._call_for_user(server, context, arguments, asked=tool, pick=known)
        connection = self._connection(server)
        if connection.status == "connected" and not any(t.name == tool for t in connection.tools):
            raise UnknownTool(tool)
        return await self._call(server, tool, arguments)

    async def _call(
        self,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressFnT | None = None,
        interaction: CallContext | None = None,
    ) -> ToolResult:
        try:
            connection = self._connection(server)
        except (UnknownServer, ServerUnavailable) as exc:
            return ToolResult.error(server, tool, getattr(exc, "message", f"Unknown MCP server {server!r}"))
        return await self._call_on(
            connection, server, tool, arguments, on_progress=on_progress, interaction=interaction
        )

    @staticmethod
    async def _call_on(
        connection: ServerConnection,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressFnT | None = None,
        interaction: CallContext | None = None,
    ) -> ToolResult:
        result, error, duration = await connection.call_tool(
            tool, arguments, on_progress=on_progress, interaction=interaction
        )
        if error is not None or result is None:
            return ToolResult.error(server, tool, error or "no result", duration)
        return ToolResult.from_mcp(server, tool, result, duration)

    @on_host_loop
    async def arequest(self, server: str, what: str, call: Any, *, user: Any = None) -> Any:
        """Run ``call(client)`` against one server (resources, prompts); ``user``'s own for a per-user server."""
        await self._ensure_started()
        if server not in self.per_user:
            return await self._connection(server).request(what, call)
        if user is None:
            raise ServerUnavailable(server, "per-user", f"MCP server {server!r} runs per user")
        try:
            user_connection = self._user_connection(server, (await self._contexts(user, [server]))[server])
        except ConfigError as exc:
            raise ServerUnavailable(server, "error", reason=f"configuration: {exc}") from exc
        user_connection.calls_in_flight += 1
        try:
            await user_connection.connection.wait_connected(settings.MCP_READY_WAIT)
            return await user_connection.connection.request(what, call)
        finally:
            user_connection.calls_in_flight -= 1
            user_connection.touch()

    async def _read(self, server: str, what: str, call: Any, *, user: Any) -> Any:
        """``arequest`` for a request that only reads, the server's errors as ServerRefused. When the connection
        goes away under it (a reconnect or reload restarts it), wait for the new one (MCP_READY_WAIT at most)
        and ask once more."""
        try:
            try:
                return await self.arequest(server, what, call, user=user)
            except MCPError as exc:
                if exc.code != CONNECTION_CLOSED:
                    raise
            await self.await_ready()
            return await self.arequest(server, what, call, user=user)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ServerUnavailable(server, "error", f"MCP server {server!r} lost its connection.") from exc
            raise ServerRefused(server, exc.code, exc.message) from exc

    @on_host_loop
    async def alist_resources(self, server: str, *, user: Any = None) -> ResourceListing:
        """``server``'s resources and resource templates, every page.

        Like every read below: UnknownServer, ServerUnavailable, ServerRefused (the server's own error) or
        TimeoutError when it cannot answer; a per-user server answers on ``user``'s connection.
        """

        async def listing(client: Client) -> ResourceListing:
            if client.server_capabilities.resources is None:
                return ResourceListing(resources=[], resource_templates=[])
            resources = await _every_page(
                lambda cursor: client.list_resources(cursor=cursor), lambda page: page.resources
            )
            templates = await _every_page(
                lambda cursor: client.list_resource_templates(cursor=cursor), lambda page: page.resource_templates
            )
            return ResourceListing(resources=resources, resource_templates=templates)

        result: ResourceListing = await self._read(server, "resources/list", listing, user=user)
        return result

    @on_host_loop
    async def aread_resource(
        self, server: str, uri: str, *, user: Any = None
    ) -> list[TextResourceContents | BlobResourceContents]:
        """The contents of the resource at ``uri`` on ``server`` (errors as for ``alist_resources``)."""

        async def read(client: Client) -> list[TextResourceContents | BlobResourceContents]:
            return (await client.read_resource(uri)).contents

        result: list[TextResourceContents | BlobResourceContents] = await self._read(
            server, "resources/read", read, user=user
        )
        return result

    @on_host_loop
    async def alist_prompts(self, server: str, *, user: Any = None) -> list[Prompt]:
        """``server``'s prompts, every page (errors as for ``alist_resources``)."""
        result: list[Prompt] = await self._read(server, "prompts/list", _list_prompts, user=user)
        return result

    @on_host_loop
    async def aget_prompt(
        self, server: str, prompt: str, arguments: dict[str, str], *, user: Any = None
    ) -> GetPromptResult:
        """``prompt`` of ``server`` filled in with ``arguments``.

        Servers hide "unknown prompt" and "missing argument" behind internal errors, so both are checked
        first: UnknownPrompt, PromptArgumentsMissing; else errors as for ``alist_resources``.
        """

        async def get(client: Client) -> GetPromptResult:
            known = {p.name: p for p in await _list_prompts(client)}
            if prompt not in known:
                raise UnknownPrompt(prompt)
            missing = [a.name for a in known[prompt].arguments or [] if a.required and a.name not in arguments]
            if missing:
                raise PromptArgumentsMissing(prompt, missing)
            return await client.get_prompt(prompt, arguments)

        result: GetPromptResult = await self._read(server, "prompts/get", get, user=user)
        return result

    @on_host_loop
    async def aprobe(self, spec: ServerSpec) -> dict[str, Any]:
        """Connect afresh (outside the pool), list tools, disconnect: the admin's "Test connection"."""
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

    @on_host_loop
    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(self._listener, return_exceptions=True), 5)
        if self._reaper is not None:
            self._reaper.cancel()
        connections = [*self.connections.values(), *(c.connection for c in self.user_connections.values())]
        self.connections.clear()
        self.user_connections.clear()
        for connection in connections:
            await connection.stop()
        await asyncio.gather(*self._stopping, return_exceptions=True)

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

    statuses = blocking(astatuses, timeout=30)
    tools = blocking(atools, timeout=lambda: 30 + settings.MCP_READY_WAIT)
    call_tool = blocking(acall_tool)
    reload = blocking(areload, timeout=60)
    reconnect = blocking(areconnect, timeout=30)
    probe = blocking(aprobe)
    ready = blocking(await_ready)


async def _list_prompts(client: Client) -> list[Prompt]:
    if client.server_capabilities.prompts is None:
        return []
    return await _every_page(lambda cursor: client.list_prompts(cursor=cursor), lambda page: page.prompts)


async def _every_page[R: PaginatedResult, I](
    list_page: Callable[[str | None], Awaitable[R]], items: Callable[[R], list[I]]
) -> list[I]:
    """The items of every page of a listing (MAX_PAGES at most), following its cursors."""
    found: list[I] = []
    cursor: str | None = None
    for _page in range(MAX_PAGES):
        page = await list_page(cursor)
        found += items(page)
        if not (cursor := page.next_cursor):
            break
    return found


def _log_start_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("MCP host: reading the server configuration failed", exc_info=future.exception())


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


_host: McpHost | None = None
_host_lock = threading.Lock()

# How a host hears of configuration changes made in other processes: run on the host's loop for its lifetime
# once it starts, it keeps ``host.listening`` set while it listens and awaits ``host.areload()`` on each change.
# The app's ready() wires in mcp_servers.broadcast's, so that neither module imports the other.
type ConfigListener = Callable[[McpHost], Coroutine[Any, Any, None]]
_config_listener: ConfigListener | None = None


def host_listen_with(listener: ConfigListener) -> None:
    """Have every host of this process, once started, run ``listener`` (process start-up, from the app config)."""
    global _config_listener
    _config_listener = listener


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


def host_reload_soon() -> None:
    """This process's host, if it has one, re-reads the configuration; without waiting (any thread)."""
    host = current_host()
    if host is not None:
        host.request_reload()


def host_close_user_connection_soon(server_name: str, user_id: int) -> None:
    """This process's host, if it has one, lets go of ``user_id``'s connection to ``server_name`` (any thread)."""
    host = current_host()
    if host is not None:
        host.request_close_user_connection(server_name, user_id)


def reset_host() -> None:
    """Close this process's host (tests, shutdown); the next get_host() makes a new one."""
    global _host
    with _host_lock:
        host, _host = _host, None
    if host is not None:
        host.close()
