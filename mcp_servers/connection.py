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
import logging
import os
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from .config import ConfigError, ServerSpec, expanded_env, expanded_headers, expanded_url
from .redaction import Redactor, redactor_for
from .results import ServerStatus, Status

logger = logging.getLogger(__name__)
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
async def open_transport(spec: ServerSpec, *, stderr: StderrLog | None = None) -> AsyncIterator[Any]:
    """The SDK transport for ``spec``, with ${VAR}s expanded now; ConfigError when it cannot be built.

    A stdio server's stderr goes to ``stderr`` (a fresh log for this server when not given).
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
    if spec.transport == "sse":
        yield sse_client(url, headers=headers, timeout=30, sse_read_timeout=300)
        return
    async with create_mcp_http_client(headers=headers) as http_client:
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

    def _mark_dead(self, reason: str) -> None:
        reason = self._redact(reason)
        if not self._dead.is_set() and not self._stopping:
            logger.warning("MCP server %s: connection lost (%s); reconnecting", self.spec.name, reason)
            self._fail(reason)
            self._dead.set()

    def _fail(self, reason: str) -> None:
        self.status = "error"
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
            if self._reconnecting:
                backoff = self._backoff_initial
                continue  # at once, still "connecting": calls are waiting for this attempt
            if self.status != "error":
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
                transport = await stack.enter_async_context(open_transport(self.spec, stderr=self._stderr))
                client = Client(
                    _watched(transport, lambda: self._mark_dead("the server closed the connection")),
                    mode=self._mode,
                    read_timeout_seconds=self._connect_timeout,
                    message_handler=self._on_message,
                    client_info=CLIENT_INFO,
                )
                await stack.enter_async_context(client)
                await self._load_tools(client)
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
        self, tool: str, arguments: dict[str, Any]
    ) -> tuple[mcp_types.CallToolResult | None, str | None, int]:
        """(result, error message, duration ms): exactly one of result and error is set."""
        started = time.perf_counter()
        timeout = self.spec.timeout_seconds
        error: str | None = None
        result: mcp_types.CallToolResult | None = None
        try:
            client = await self._ready_client()
            async with self._semaphore:
                async with asyncio.timeout(timeout + 5):  # a backstop over the SDK's own read timeout
                    result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
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
        if error is not None:
            error = self._redact(error)
        duration = int((time.perf_counter() - started) * 1000)
        self.calls += 1
        self.last_call_ms = duration
        if error is not None or (result is not None and result.is_error):
            self.errors += 1
        return result, error, duration

    async def request(self, what: str, call: Callable[[Client], Any]) -> Any:
        """Any other request (resources, prompts) with the server's timeout; MCP errors propagate."""
        client = await self._ready_client()
        try:
            async with asyncio.timeout(self.spec.timeout_seconds):
                return await call(client)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._mark_dead(f"connection closed during {what}")
            raise


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
