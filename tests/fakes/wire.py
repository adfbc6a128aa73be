"""A real HTTP/1.1 server on 127.0.0.1 for speaking a provider's wire protocol in tests.

Runs in a background thread (ThreadingHTTPServer), answers JSON with
Content-Length and streams (SSE, NDJSON) with chunked transfer encoding, keeps
connections alive like a real API, and records every request so tests can
assert what the SDK put on the wire. Provider fakes subclass it, add routes,
and turn scripted ``Turn`` / ``Fail`` replies into their own wire format.
"""

import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class JsonReply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the reply is written (a model that takes its time)


@dataclass
class StreamReply:
    """Chunks written one by one (each flushed), e.g. SSE events or NDJSON lines."""

    status: int
    content_type: str
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Reply = JsonReply | StreamReply
Handler = Callable[[Recorded, re.Match[str]], Reply]


@dataclass
class ToolCallSpec:
    name: str
    arguments: dict[str, Any]
    id: str | None = None  # providers that assign ids make one up when None


@dataclass
class Turn:
    """One scripted model reply, in provider-neutral terms; each fake renders it as JSON or as a stream."""

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    thinking: str = ""
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    stop: str = "end"  # "end" | "length" | "tool_calls" (implied when tool_calls) | "refused"
    # Split streamed text into pieces of this many characters.
    chunk_size: int = 4


@dataclass
class Fail:
    """A scripted error reply in the provider's own error format."""

    status: int
    message: str = "error"
    retry_after: float | None = None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients closing pooled keep-alive connections (at exit, after a cancel) is normal, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WireServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Recorded] = []
        self.script: deque[Turn | Fail] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- set-up ------------------------------------------------------------------------

    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def push(self, *replies: Turn | Fail) -> None:
        with self._lock:
            self.script.extend(replies)

    def next_reply(self, default: Turn | None = None) -> Turn | Fail:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return default or Turn(text="ok")

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.requests.clear()

    def requests_to(self, path_fragment: str) -> list[Recorded]:
        return [r for r in self.requests if path_fragment in r.path]

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an IPv4 server: (host, port)
        return f"http://{host}:{port}"

    def start(self) -> Self:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; with Nagle on, delayed ACKs add ~40 ms to each reply.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with server._lock:
                    server.requests.append(recorded)
                for method, pattern, handler in server.routes:
                    match = pattern.fullmatch(parts.path)
                    if method == self.command and match:
                        self._write(handler(recorded, match))
                        return
                self._write(JsonReply(404, {"error": {"message": f"no route {self.command} {parts.path}"}}))

            def _write(self, reply: Reply) -> None:
                if isinstance(reply, JsonReply):
                    if reply.delay:
                        time.sleep(reply.delay)
                    payload = json.dumps(reply.body).encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Cache-Control", "no-cache")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for chunk in reply.chunks:
                    if reply.delay:
                        time.sleep(reply.delay)
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _serve_quietly(self) -> None:
                # A client that hangs up mid-stream (a cancelled or timed-out call) is normal here.
                try:
                    self._serve()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = do_PUT = _serve_quietly

        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def sse(event: str | None, data: Any) -> bytes:
    """One Server-Sent Event; ``event`` None gives a data-only event (OpenAI, Gemini)."""
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


def ndjson(data: Any) -> bytes:
    return (json.dumps(data) + "\n").encode()


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] if text else []
