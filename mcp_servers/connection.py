"""One live connection to one MCP server, owned by a single task on the host's event loop.

The SDK's ``Client`` is entered and exited inside ``_run`` (anyio cancel scopes
must be left in the task that entered them); other tasks on the same loop call
tools through it concurrently, bounded by a semaphore. When the connection
dies (process exit, connection closed, transport error) the owner drops it and
reconnects with capped exponential backoff; calls in the meantime get an error
result at once instead of hanging.

Everything a server says about itself on the way out (its stderr, error texts) passes through the
server's redactor first, so its configured secrets never reach a log, a status or an API answer.
"""

import asyncio
import contextvars
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast
from urllib.parse import urlsplit

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CONNECTION_CLOSED, LOG_LEVEL_META_KEY, REQUEST_TIMEOUT, RequestParamsMeta
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from platform_site.db import run_db

from .config import ConfigError, ServerSpec, expanded_env, expanded_headers, expanded_url
from .elicitation import schema_problem
from .interactions import (
    CallContext,
    ElicitationAnswer,
    ElicitationRequest,
    InteractionRefused,
    SamplingRequest,
    answer_without_user,
    interaction_settings,
    sample_without_user,
)
from .models import Policy
from .redaction import Redactor, redactor_for
from .results import ServerStatus, Status
from .server_log import ServerLogSink

try:  # not public API: stops a request's timeout while a person answers (see _InFlight)
    from mcp.shared import _request_clock
except ImportError:  # pragma: no cover
    _request_clock = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)
T = TypeVar("T")
stderr_logger = logging.getLogger("mcp_servers.stderr")

CLIENT_INFO = mcp_types.Implementation(name="llm-platform", version="0.1.0")
MAX_TOOL_PAGES = 100


def describe(exc: BaseException) -> str:
    """A readable one-line reason, digging through exception groups to the first real error."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _WatchedReadStream:
    """Passes messages through and reports end-of-stream, so a dead server is noticed before any call."""

    def __init__(self, inner: Any, on_eof: Callable[[], None]) -> None:
        self._inner = inner
        self._on_eof = on_eof

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except Exception:
            self._on_eof()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> "_WatchedReadStream":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, Exception):
            self._on_eof()
            raise

    async def __aenter__(self) -> "_WatchedReadStream":
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@asynccontextmanager
async def _watched(transport: Any, on_eof: Callable[[], None]) -> AsyncIterator[Any]:
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, on_eof), write_stream


class StderrLog:
    """A stdio server's stderr, logged line by line with its secrets redacted.

    A line already logged is not logged again (a server prints the same banner on every restart),
    and at most ``max_lines`` lines a minute are logged; the rest are counted and reported once.
    """

    REMEMBERED_LINES = 256
    MAX_LINE_CHARS = 2000

    def __init__(self, server: str, redact: Redactor, *, max_lines: int = 60) -> None:
        self._server = server
        self._redact = redact
        self._max_lines = max_lines
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window_start = time.monotonic()
        self._logged = 0
        self._suppressed = 0

    def line(self, raw: bytes) -> None:
        text = self._redact(raw.decode("utf-8", "replace").strip())[: self.MAX_LINE_CHARS]
        if not text:
            return
        if text in self._seen:
            self._seen.move_to_end(text)
            return
        self._seen[text] = None
        if len(self._seen) > self.REMEMBERED_LINES:
            self._seen.popitem(last=False)
        now = time.monotonic()
        if now - self._window_start >= 60:
            if self._suppressed:
                stderr_logger.info("MCP server %s: %d stderr line(s) not logged", self._server, self._suppressed)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self._max_lines:
            self._suppressed += 1
            return
        self._logged += 1
        stderr_logger.info("MCP server %s stderr: %s", self._server, text)


async def _pump_stderr(reader: asyncio.StreamReader, log: StderrLog) -> None:
    pending = b""
    while chunk := await reader.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            log.line(line)
        if len(pending) > StderrLog.MAX_LINE_CHARS * 4:  # a "line" that never ends is logged in pieces
            log.line(pending)
            pending = b""
    log.line(pending)


@asynccontextmanager
async def _stderr_pipe(log: StderrLog) -> AsyncIterator[TextIO]:
    """A file to hand the child as its stderr; what it writes there goes to ``log``.

    Left to the SDK, the child would inherit this process's stderr and write to it unfiltered.
    """
    read_fd, write_fd = os.pipe()
    reading = os.fdopen(read_fd, "rb", buffering=0)  # the pipe transport owns and closes it
    writing = os.fdopen(write_fd, "w")  # closed below, once the child has its copy
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        pipe, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), reading)
    except BaseException:
        reading.close()
        writing.close()
        raise
    pump = loop.create_task(_pump_stderr(reader, log))
    try:
        yield writing
    finally:
        # The child has exited by now; with our copy closed too, the pipe ends once it is drained.
        writing.close()
        await asyncio.wait([pump], timeout=1)
        pump.cancel()
        pipe.close()


@asynccontextmanager
async def open_transport(
    spec: ServerSpec, *, stderr: StderrLog | None = None, on_sign_in_required: Callable[[str], None] | None = None
) -> AsyncIterator[Any]:
    """The SDK transport for ``spec``, with ${VAR}s expanded now; ConfigError when it cannot be built.

    A stdio server's stderr goes to ``stderr`` (a fresh log for this server when not given). An OAuth
    server's requests carry its token (``mcp_servers.oauth``); ``on_sign_in_required`` hears when the
    server wants the user to sign in again.
    """
    if spec.transport == "stdio":
        if not spec.command:
            raise ConfigError("no command configured")
        for directory in spec.make_dirs:  # a per-user sandbox; made again should someone remove it
            try:
                await asyncio.to_thread(Path(directory).mkdir, mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the directory {directory}: {exc.strerror}") from exc
        params = StdioServerParameters(
            command=spec.command, args=list(spec.args), env=expanded_env(spec), cwd=spec.cwd or None
        )
        from mcp.client.stdio import stdio_client

        async with _stderr_pipe(stderr or StderrLog(spec.name, redactor_for(spec))) as errlog:
            yield stdio_client(params, errlog=errlog)
        return
    url = expanded_url(spec)
    headers = expanded_headers(spec)
    from .oauth import connection_auth

    auth = connection_auth(spec, on_sign_in_required=on_sign_in_required)
    if spec.transport == "sse":
        yield sse_client(url, headers=headers, timeout=30, sse_read_timeout=300, auth=auth)
        return
    async with create_mcp_http_client(headers=headers, auth=auth) as http_client:
        yield streamable_http_client(url, http_client=http_client)


class ServerConnection:
    def __init__(
        self,
        spec: ServerSpec,
        *,
        on_tools_changed: Callable[["ServerConnection"], None],
        connect_timeout: float = 60.0,
        max_concurrent_calls: int = 8,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        mode: str = "auto",
    ) -> None:
        self.spec = spec
        self._mode = mode
        self._redact = redactor_for(spec)
        # One for the connection's lifetime, so a restart does not log the same start-up lines again.
        self._stderr = StderrLog(spec.name, self._redact)
        self.log = ServerLogSink(spec.name, self._redact)
        self._notices: set[asyncio.Task[None]] = set()  # log level and roots changes on their way to the server
        self.tools: list[mcp_types.Tool] = []
        self._on_tools_changed = on_tools_changed
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._semaphore = asyncio.Semaphore(max_concurrent_calls)
        self._client: Client | None = None
        # Set whenever a connection attempt ends, well or badly: waiters stop waiting either way.
        self._settled = asyncio.Event()
        self._dead = asyncio.Event()
        self._wake = asyncio.Event()
        self._tools_changed = asyncio.Event()
        self._stopping = False
        self._reconnecting = False
        self._sign_in_required = False  # OAuth: the server refused the user's token; only a new sign-in helps
        self._task: asyncio.Task[None] | None = None
        # status
        self.status: Status = "connecting"
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.connected_since: datetime | None = None
        self.protocol_version: str | None = None
        self.server_info: mcp_types.Implementation | None = None
        self.capabilities: dict[str, Any] = {}
        self.instructions: str | None = None
        self.calls = 0
        self.errors = 0
        self.last_call_ms: int | None = None
        # Tool calls in flight, oldest first: whom a server's sampling or elicitation request belongs to.
        self._in_flight: list[_InFlight] = []

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mcp-server:{self.spec.name}")

    async def stop(self) -> None:
        self._stopping = True
        self._dead.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # the owner already recorded its own failure
                logger.debug("stopping %s", self.spec.name, exc_info=True)
        await self.log.aclose()

    def reconnect(self) -> None:
        """Drop the current connection (if any) and connect again now.

        From now on the server is "connecting": calls wait for the new connection (as at start-up)
        instead of reaching the old one while it closes, which answers them "connection closed".
        """
        if not self._stopping:
            self._reconnecting = True
            self._client = None
            self.status = "connecting"
            self._settled.clear()
        self._dead.set()
        self._wake.set()

    async def wait_connected(self, seconds: float) -> bool:
        """Wait until the current attempt settles; whether it ended connected."""
        if self.status == "connecting":
            try:
                await asyncio.wait_for(self._settled.wait(), seconds)
            except TimeoutError:
                return False
        return self.status == "connected"

    def snapshot(self) -> ServerStatus:
        return ServerStatus(
            name=self.spec.name,
            status=self.status,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            protocol_version=self.protocol_version,
            server_name=self.server_info.name if self.server_info else None,
            server_version=self.server_info.version if self.server_info else None,
            capabilities=self.capabilities,
            instructions=self.instructions,
            connected_since=self.connected_since,
            tool_count=len(self.tools),
            calls=self.calls,
            errors=self.errors,
            last_call_ms=self.last_call_ms,
        )

    def _on_sign_in_required(self, _scope: str) -> None:
        # Not "lost": nothing reconnects until the user signs in again (the host then starts a new connection).
        if not self._sign_in_required and not self._stopping:
            logger.info("MCP server %s: the server refused the user's authorization; needs sign-in", self.spec.name)
        self._sign_in_required = True
        self._fail("needs sign-in: the server refused the user's authorization")
        self._dead.set()

    def _mark_dead(self, reason: str) -> None:
        reason = self._redact(reason)
        if not self._dead.is_set() and not self._stopping:
            logger.warning("MCP server %s: connection lost (%s); reconnecting", self.spec.name, reason)
            self._fail(reason)
            self._dead.set()

    def _fail(self, reason: str) -> None:
        # Once the server refused the user's authorization, that is the state whatever else fails after.
        self.status = "needs-sign-in" if self._sign_in_required else "error"
        self.last_error = self._redact(reason)
        self.last_error_at = datetime.now(UTC)
        self._settled.set()

    async def _run(self) -> None:
        backoff = self._backoff_initial
        while not self._stopping:
            self._reconnecting = False
            self.status = "connecting"
            self._settled.clear()
            self._dead = asyncio.Event()
            self._wake.clear()
            retry_later = True
            try:
                await self._serve()
                backoff = self._backoff_initial  # we were connected: start the backoff over
            except ConfigError as exc:
                self._fail(f"configuration: {exc}")
                retry_later = False  # nothing changes until the row is edited (which replaces us)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                if not self._reconnecting:  # a reconnect's teardown of the old connection may fail: no news
                    self._fail(describe(exc))
                    logger.warning("MCP server %s: %s", self.spec.name, self.last_error)
            finally:
                self._client = None
                self.connected_since = None
            if self._stopping:
                break
            if self._sign_in_required:
                self._fail("needs sign-in: the server refused the user's authorization")
                self.status = "needs-sign-in"
                retry_later = False
            if self._reconnecting:
                backoff = self._backoff_initial
                continue  # at once, still "connecting": calls are waiting for this attempt
            if self.status not in ("error", "needs-sign-in"):
                self._fail("connection closed")
            delay = backoff * random.uniform(0.8, 1.2) if retry_later else None  # noqa: S311
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                backoff = self._backoff_initial  # an explicit reconnect
            except TimeoutError:
                backoff = min(backoff * 2, self._backoff_max)
        self.status = "disabled"
        self._settled.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(self._connect_timeout):
                transport = await stack.enter_async_context(
                    open_transport(self.spec, stderr=self._stderr, on_sign_in_required=self._on_sign_in_required)
                )
                client = Client(
                    _watched(transport, lambda: self._mark_dead("the server closed the connection")),
                    mode=self._mode,
                    read_timeout_seconds=self._connect_timeout,
                    message_handler=self._on_message,
                    logging_callback=self._on_log,
                    # Declared only with roots to give (a capability is fixed at connect time: the fingerprint
                    # reconnects a server whose roots come or go); a change of them is announced instead.
                    list_roots_callback=self._list_roots if self.spec.roots else None,
                    client_info=CLIENT_INFO,
                    sampling_callback=self._on_sampling,
                    elicitation_callback=self._on_elicitation,
                )
                await stack.enter_async_context(client)
                await self._load_tools(client)
                await self._send_log_level(client)
            self.protocol_version = client.protocol_version
            self.server_info = client.server_info
            self.capabilities = client.server_capabilities.model_dump(mode="json", by_alias=True, exclude_none=True)
            self.instructions = client.instructions
            self._client = client
            self.status = "connected"
            self.last_error = None
            self.connected_since = datetime.now(UTC)
            self._settled.set()
            logger.info("MCP server %s connected (%d tools)", self.spec.name, len(self.tools))
            watcher = asyncio.get_running_loop().create_task(self._watch_tool_changes(client))
            try:
                await self._dead.wait()
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    # --- tool catalog --------------------------------------------------------------------

    async def _load_tools(self, client: Client) -> None:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        allow, denied = set(self.spec.tool_allowlist), set(self.spec.denied_tools)
        # A denied tool is left out of the catalog, so no one is offered it and no name resolves to it.
        self.tools = [tool for tool in tools if (not allow or tool.name in allow) and tool.name not in denied]
        self._on_tools_changed(self)

    async def _on_message(self, message: Any) -> None:
        # Legacy (2025-era) servers announce changes with a notification; refetch outside the receive loop.
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self._tools_changed.set()

    async def _watch_tool_changes(self, client: Client) -> None:
        watchers = [self._refetch_on_notification(client)]
        tools_capability = client.server_capabilities.tools
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS and tools_capability and tools_capability.list_changed:
            watchers.append(self._refetch_on_listen(client))
        await asyncio.gather(*watchers)

    async def _refetch_on_notification(self, client: Client) -> None:
        while True:
            await self._tools_changed.wait()
            self._tools_changed.clear()
            await self._refetch(client)

    async def _refetch_on_listen(self, client: Client) -> None:
        # 2026-07-28 servers only send change events on a subscriptions/listen stream.
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._refetch(client)
        except (ListenNotSupportedError, SubscriptionLost, MCPError) as exc:
            logger.info("MCP server %s: no tool change events (%s)", self.spec.name, self._redact(describe(exc)))

    async def _refetch(self, client: Client) -> None:
        try:
            await self._load_tools(client)
        except Exception as exc:
            logger.warning("MCP server %s: refetching tools failed: %s", self.spec.name, self._redact(describe(exc)))

    # --- what the host tells the server, and answers it: log level, log messages, roots ----------------

    def update_spec(self, spec: ServerSpec) -> None:
        """Take a saved row whose fingerprint is unchanged; tell the server of a new log level or new roots.

        A log level set back to blank is not sent: the server keeps the last one until it reconnects.
        """
        old, self.spec = self.spec, spec
        client = self._client
        if client is None or self.status != "connected":
            return  # a connection being made reads the new spec
        if spec.log_level and spec.log_level != old.log_level:
            self._notice(self._send_log_level(client))
        if spec.roots != old.roots:
            self._notice(self._announce_roots(client))

    def _notice(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    def _log_opt_in(self, client: Client) -> RequestParamsMeta | None:
        # 2026-07-28 servers send log messages only for a request that asks for them, at or above its level.
        if not self.spec.log_level or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return None
        return cast(RequestParamsMeta, {LOG_LEVEL_META_KEY: self.spec.log_level})

    async def _send_log_level(self, client: Client) -> None:
        """logging/setLevel, for 2025-era servers that declare logging (newer ones are asked per request)."""
        level = self.spec.log_level
        if not level or client.protocol_version in MODERN_PROTOCOL_VERSIONS or not client.server_capabilities.logging:
            return
        request = mcp_types.SetLevelRequest(params=mcp_types.SetLevelRequestParams(level=level))  # type: ignore[arg-type]
        try:
            await client.session.send_request(request, mcp_types.EmptyResult, request_read_timeout_seconds=10)
        except (MCPError, TimeoutError, ValidationError) as exc:
            reason = self._redact(describe(exc))
            logger.warning("MCP server %s: setting the log level failed: %s", self.spec.name, reason)

    async def _announce_roots(self, client: Client) -> None:
        # 2026-07-28 has no such notice: a server asks for the roots when it needs them, and gets the new ones.
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        try:
            await client.session.send_notification(mcp_types.RootsListChangedNotification())
        except Exception as exc:
            reason = self._redact(describe(exc))
            logger.warning("MCP server %s: announcing new roots failed: %s", self.spec.name, reason)

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        self.log.add(params.level, params.logger, params.data)

    async def _list_roots(self, context: ClientRequestContext) -> mcp_types.ListRootsResult | mcp_types.ErrorData:
        roots = [mcp_types.Root(uri=uri, name=name or None) for uri, name in self.spec.roots]  # type: ignore[arg-type]
        return mcp_types.ListRootsResult(roots=roots)

    # --- calls ---------------------------------------------------------------------------

    async def _ready_client(self) -> Client:
        if self._client is None or self.status != "connected":
            # A connection in progress gets a moment; a failed one answers at once.
            if self.status == "connecting":
                await self.wait_connected(min(self.spec.timeout_seconds, 5.0))
            if self._client is None or self.status != "connected":
                raise ServerUnavailable(self.spec.name, self.status, reason=self.last_error)
        return self._client

    async def call_tool(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        on_progress: ProgressFnT | None = None,
        interaction: CallContext | None = None,
    ) -> tuple[mcp_types.CallToolResult | None, str | None, int]:
        """(result, error message, duration ms): exactly one of result and error is set.

        ``on_progress`` gets the server's progress notices for this call (on the host loop). Cancelling the
        task that awaits this sends the server ``notifications/cancelled`` (the SDK does, for a call abandoned).
        ``interaction`` answers the server's sampling and elicitation requests made during the call (None:
        nobody is behind it; see ``interactions``).
        """
        started = time.perf_counter()
        timeout = self.spec.timeout_seconds
        error: str | None = None
        result: mcp_types.CallToolResult | None = None
        flight = _InFlight(interaction)
        self._in_flight.append(flight)
        try:
            client = await self._ready_client()
            async with self._semaphore:
                async with asyncio.timeout(timeout + 5) as backstop:  # a backstop over the SDK's own read timeout
                    flight.backstop = backstop
                    result = await flight.run(
                        client.call_tool(
                            tool,
                            arguments,
                            read_timeout_seconds=timeout,
                            progress_callback=on_progress,
                            meta=self._log_opt_in(client),
                        )
                    )
        except ServerUnavailable as exc:
            error = exc.message
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                error = f"Tool {tool!r} timed out after {timeout:g}s"
            elif exc.code == CONNECTION_CLOSED:
                error = f"Connection to MCP server {self.spec.name!r} was lost"
                self._mark_dead("connection closed during a call")
            else:
                error = exc.message or f"MCP error {exc.code}"
        except TimeoutError:
            error = f"Tool {tool!r} timed out after {timeout:g}s"
        except ValidationError as exc:
            error = f"MCP server {self.spec.name!r} returned an invalid result: {exc.error_count()} validation error(s)"
        except (httpx2.TransportError, OSError, BaseExceptionGroup) as exc:
            # The reason (paths, host names) goes to last_error, which only staff see; the model and the
            # stored history get no more than a user may see.
            error = f"MCP server {self.spec.name!r} is unavailable: the connection failed during the call"
            self._mark_dead(describe(exc))
        finally:
            flight.done = True
            self._in_flight.remove(flight)
        if error is not None and self._sign_in_required:
            error = f"MCP server {self.spec.name!r} needs the user to sign in again"
        if error is not None:
            error = self._redact(error)
        duration = int((time.perf_counter() - started) * 1000)
        self.calls += 1
        self.last_call_ms = duration
        if error is not None or (result is not None and result.is_error):
            self.errors += 1
        return result, error, duration

    # --- the server's own requests during a call: sampling, elicitation ---------------------------

    def _caller(self) -> "_InFlight | bool | None":
        """The call a server request belongs to; None when no call is in flight, False when it is ambiguous.

        The SDK does not say which call a request serves. One call in flight, or calls of one user only
        (a per-user server's connection), is unambiguous: the oldest is taken. Calls of several users (or
        one with nobody behind it) on a shared connection are not: no user is shown another's request.
        """
        current = _CURRENT_CALL.get()  # exact when the request is resolved inside the call (2026-07-28)
        if current is not None and current in self._in_flight:
            return current
        if not self._in_flight:
            return None
        if len({flight.user_id for flight in self._in_flight}) > 1:
            return False
        return self._in_flight[0]

    async def _on_sampling(
        self, context: ClientRequestContext, params: mcp_types.CreateMessageRequestParams
    ) -> mcp_types.CreateMessageResult | mcp_types.ErrorData:
        flight = self._caller()
        if flight is False:
            logger.warning("MCP server %s: a sampling request during calls of several users: refused", self.spec.name)
            return _refused("Sampling refused: the request cannot be matched to one user's tool call.")
        try:
            config = await run_db(interaction_settings, server=self.spec.name)
            if config.sampling_policy == Policy.DENY:
                raise InteractionRefused("Sampling is not allowed for this server.")
            request = _sampling_request(params)
            if not isinstance(flight, _InFlight) or flight.interaction is None:
                answer = await sample_without_user(request, config)
            else:
                with flight.waiting():
                    answer = await flight.interaction.sample(request, config)
        except InteractionRefused as exc:
            return _refused(exc.message)
        except Exception:
            logger.exception("MCP server %s: answering a sampling request failed", self.spec.name)
            return _refused("Sampling failed in the host.")
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text=answer.text),
            model=answer.model,
            stop_reason=answer.stop_reason,
        )

    async def _on_elicitation(
        self, context: ClientRequestContext, params: mcp_types.ElicitRequestParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        flight = self._caller()
        if flight is False:
            logger.warning("MCP server %s: an elicitation during calls of several users: declined", self.spec.name)
            return mcp_types.ElicitResult(action="decline")
        request: ElicitationRequest
        if isinstance(params, mcp_types.ElicitRequestURLParams):
            link = urlsplit(params.url)
            if link.scheme not in ("https", "http") or not link.hostname:
                # Shown to a person as a link: nothing but a web address (no javascript:, data:, file:).
                logger.warning("MCP server %s: an elicitation URL that is not a web address: declined", self.spec.name)
                return mcp_types.ElicitResult(action="decline")
            request = ElicitationRequest(
                mode="url", message=params.message, url=params.url, elicitation_id=params.elicitation_id
            )
        else:
            problem = schema_problem(params.requested_schema)
            if problem is not None:
                logger.warning(
                    "MCP server %s: an elicitation form that cannot be shown (%s): declined", self.spec.name, problem
                )
                return mcp_types.ElicitResult(action="decline")
            request = ElicitationRequest(mode="form", message=params.message, requested_schema=params.requested_schema)
        try:
            config = await run_db(interaction_settings, server=self.spec.name)
            if not isinstance(flight, _InFlight) or flight.interaction is None:
                answer = answer_without_user(request, config)
            else:
                with flight.waiting():
                    answer = await flight.interaction.elicit(request, config)
        except Exception:
            logger.exception("MCP server %s: answering an elicitation failed", self.spec.name)
            answer = ElicitationAnswer(action="cancel")
        content = answer.content if answer.action == "accept" and request.mode == "form" else None
        return mcp_types.ElicitResult(action=answer.action, content=content)

    async def request(self, what: str, call: Callable[[Client], Any]) -> Any:
        """Any other request (resources, prompts) with the server's timeout; MCP errors propagate.

        It is in flight with nobody behind it: what the server asks during it (an input request of a read,
        a sampling request) is answered as for no user, and makes other users' calls ambiguous, never
        theirs.
        """
        client = await self._ready_client()
        flight = _InFlight(None)
        self._in_flight.append(flight)
        try:
            async with asyncio.timeout(self.spec.timeout_seconds):
                return await flight.run(call(client))
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._mark_dead(f"connection closed during {what}")
            raise
        finally:
            flight.done = True
            self._in_flight.remove(flight)


_CURRENT_CALL: contextvars.ContextVar["_InFlight | None"] = contextvars.ContextVar("mcp_call", default=None)


class _InFlight:
    """One tool call in flight on a connection: who is behind it, and the clocks that time it.

    While the call's owner waits for a person (an approval, a form) or a model, the SDK's read timeout
    and our backstop stop: a tool's timeout measures the server, not the user.
    """

    def __init__(self, interaction: CallContext | None) -> None:
        self.interaction = interaction
        self.user_id = interaction.user_id if interaction is not None else None
        self.backstop: asyncio.Timeout | None = None
        self.done = False
        self._context: contextvars.Context | None = None
        self._waits = 0
        self._clock: Any = None
        self._backstop_left: float | None = None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        # In a context of its own: the SDK's request clock set in it can then be reached from a request handler.
        self._context = contextvars.copy_context()
        self._context.run(_CURRENT_CALL.set, self)
        return await asyncio.get_running_loop().create_task(coro, context=self._context)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self._waits += 1
        if self._waits == 1:
            self._pause()
        try:
            yield
        finally:
            self._waits -= 1
            if self._waits == 0:
                self._resume()

    def _pause(self) -> None:
        if self.done:
            return
        if _request_clock is not None and self._context is not None:
            self._clock = self._context.get(_request_clock._clock)
            if self._clock is not None:
                self._clock.pause()
        if self.backstop is not None and (when := self.backstop.when()) is not None:
            self._backstop_left = when - asyncio.get_running_loop().time()
            self.backstop.reschedule(None)

    def _resume(self) -> None:
        clock, self._clock = self._clock, None
        left, self._backstop_left = self._backstop_left, None
        if self.done:
            return
        if clock is not None:
            clock.resume()
        if self.backstop is not None and left is not None:
            self.backstop.reschedule(asyncio.get_running_loop().time() + max(left, 0))


def _refused(message: str) -> mcp_types.ErrorData:
    # -1: what the specification's examples answer for a sampling request the user rejected.
    return mcp_types.ErrorData(code=-1, message=message)


def _text_of(message: mcp_types.SamplingMessage) -> str:
    return "\n".join(
        block.text if isinstance(block, mcp_types.TextContent) else f"[{block.type} content left out]"
        for block in message.content_as_list
    )


def _sampling_request(params: mcp_types.CreateMessageRequestParams) -> SamplingRequest:
    return SamplingRequest(
        messages=[{"role": message.role, "text": _text_of(message)} for message in params.messages],
        max_tokens=params.max_tokens,
        system_prompt=params.system_prompt,
        temperature=params.temperature,
        stop_sequences=params.stop_sequences,
    )


class ServerUnavailable(Exception):
    """The server cannot take requests now.

    ``message`` says only that, and is fit for anyone (it reaches chats as a tool result);
    ``reason``, the redacted last error, is for staff.
    """

    def __init__(self, name: str, status: str, message: str | None = None, *, reason: str | None = None) -> None:
        self.message = message or f"MCP server {name!r} is {status}"
        super().__init__(self.message)
        self.name = name
        self.status = status
        self.reason = reason
