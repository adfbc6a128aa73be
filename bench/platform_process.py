"""The platform as a real server process for the benchmarks (Daphne, or uvicorn with N workers), and their helpers.

Not a benchmark itself: chat_overhead.py and ws_streams.py import it. Imports
nothing of Django, so a script can set its environment up before Django loads.
"""

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("daphne", "uvicorn")
APPLICATION = "platform_site.asgi:application"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names if it does not exist yet (a new machine has none)."""
    import psycopg
    from psycopg import sql

    parsed = urlsplit(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        return
    name = unquote(parsed.path.lstrip("/"))
    admin = urlunsplit(parsed._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created the database {name!r}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_open_files() -> None:
    """Many sockets, here and in the server (which inherits the limit)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def deep_fake_backlog() -> None:
    """Let the local provider fake queue as many connects as a real API would.

    socketserver listens with a backlog of 5: with hundreds of connections opened
    at once, SYNs beyond it are dropped and retried a second later, a delay no real
    provider adds and the benchmark would blame on the platform.
    """
    ThreadingHTTPServer.request_queue_size = 4096


def _stat_fields(pid: int) -> list[str]:
    # Fields after "(comm)", which may itself hold spaces: state is [0], ppid [1], utime [11], stime [12].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far."""
    return _cpu_ticks(pids) / os.sysconf("SC_CLK_TCK")


def rss_mb(pids: list[int]) -> float:
    """Resident memory now (VmRSS), summed over the serving processes."""
    return sum(_status_kb(pid, "VmRSS") for pid in pids) / 1024


def peak_rss_mb(pids: list[int]) -> float:
    """Peak resident memory (VmHWM), summed over the serving processes."""
    return sum(_status_kb(pid, "VmHWM") for pid in pids) / 1024


def _workers(pid: int) -> list[int]:
    """uvicorn --workers N (N > 1) serves from multiprocessing-spawned children; its own process only supervises."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if int(_stat_fields(int(entry.name))[1]) == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return sorted(found)


def _command(server: str, port: int, processes: int) -> list[str]:
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), APPLICATION]
    return [
        sys.executable, "-m", "uvicorn", APPLICATION, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(processes), "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
        "--ws-per-message-deflate", "false", "--lifespan", "off", "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", "75",
    ]  # fmt: skip


@dataclass
class PlatformServer:
    server: str
    processes: int
    port: int
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: uvicorn's workers when it has them, else the server itself."""
        return _workers(self.process.pid) or [self.process.pid]

    def describe(self) -> str:
        return f"{self.server}, {self.processes} process{'es' if self.processes > 1 else ''}"


class ServerFailed(RuntimeError):
    """The server exited or never answered /healthz."""


_log_written = False


def _server_log() -> IO[bytes] | int:
    """BENCH_SERVER_LOG=FILE keeps the server's stderr; the first server of a run truncates it, later ones append."""
    global _log_written
    path = os.environ.get("BENCH_SERVER_LOG")
    if not path:
        return subprocess.DEVNULL
    log = open(path, "ab" if _log_written else "wb")  # noqa: SIM115  (the server process owns it while it runs)
    _log_written = True
    return log


def check_server(server: str, processes: int) -> None:
    if server not in SERVERS:
        raise SystemExit(f"--server must be one of {', '.join(SERVERS)}")
    if server == "daphne" and processes > 1:
        raise SystemExit("Daphne serves from one process; use --server uvicorn for more than one")
    if processes < 1:
        raise SystemExit("--processes must be at least 1")


@contextlib.contextmanager
def platform(server: str = "daphne", processes: int = 1, port: int | None = None) -> Iterator[PlatformServer]:
    """Run the platform with DEBUG off until the block ends; ready once every serving process is up and idle."""
    check_server(server, processes)
    port = port or free_port()
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    log = _server_log()
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
        _command(server, port, processes),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # its own process group: stopping it stops its workers and MCP servers too
    )
    running = PlatformServer(server=server, processes=processes, port=port, process=process)
    try:
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if not isinstance(log, int):
            log.close()


def _wait_ready(running: PlatformServer, timeout: float = 120) -> None:
    """/healthz answers 200, every worker exists, and none is still busy starting.

    uvicorn binds the socket before its workers import Django, so a TCP connect
    proves nothing; and with several workers one answering /healthz says nothing
    of the others, hence the wait until their CPU time stops growing.
    """
    deadline = time.monotonic() + timeout
    serving = False
    with httpx.Client(base_url=running.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise ServerFailed(
                    f"{running.server} exited with status {running.process.returncode}; "
                    "BENCH_SERVER_LOG=FILE keeps its log"
                )
            try:
                healthy = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                healthy = False
            pids = running.serving_pids()
            serving = healthy and (running.processes == 1 or len(pids) == running.processes)
            if not serving:
                time.sleep(0.1)
                continue
            before = _cpu_ticks(pids)
            time.sleep(0.5)
            if _cpu_ticks(pids) - before <= 5:  # clock ticks of 10 ms: under 10% of a core, done starting
                return
    if not serving:
        raise ServerFailed(f"{running.describe()} not ready after {timeout:g} s; BENCH_SERVER_LOG=FILE keeps its log")
    print(f"warning: {running.describe()} answers but never went idle; measuring anyway", file=sys.stderr)
