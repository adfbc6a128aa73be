"""Shared fixtures: users, API clients authenticated by key, a clean shared cache, MCP test servers."""

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections
from django.test.utils import override_settings
from rest_framework.test import APIClient

from accounts.selectors import api_key_cache_clear
from accounts.services import api_key_create
from chats.fronts.common import model_alias_cache_clear
from mcp_servers.selectors import mcp_access_cache_clear
from platform_site.db import close_db_threads, run_db_in_caller_thread
from providers.selectors import provider_cache_clear

from .factories import UserFactory

# In this process MCP hosts start per test (they read the test's rows), not when platform_site.asgi is
# imported at collection time. Server processes the tests start do connect at boot, as in production.
django_settings.MCP_CONNECT_AT_START = False


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    yield
    # Async code reaches the database from worker threads; their pooled PostgreSQL connections
    # must be closed before the test database can be dropped.
    with django_db_blocker.unblock():
        # asgiref runs async tests' ORM calls in its own thread: close the connections held there too.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        close_db_threads()
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    # PBKDF2 at production strength costs ~0.4 s per user created; tests need no such strength.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _clean_cache():
    # The cache is Redis in CI and holds rate-limit counters: start each test at zero. Each process
    # also keeps API-key lookups, provider rows and MCP access rules for a few seconds: tests change them at will.
    cache.clear()
    api_key_cache_clear()
    provider_cache_clear()
    model_alias_cache_clear()
    mcp_access_cache_clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _database_threads(request):
    """Where async code's ORM work runs: in the test's transaction (plain django_db), else in db threads."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and bool(marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    uses_db = marker is not None or "db" in request.fixturenames
    run_db_in_caller_thread(uses_db and not transactional)
    yield
    run_db_in_caller_thread(False)


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


def client_for(user) -> APIClient:
    client = APIClient()
    issued = api_key_create(owner=user, name="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


# --- MCP ---------------------------------------------------------------------------------

TEST_MCP_SERVER = str(Path(__file__).parent / "mcp" / "server.py")


@pytest.fixture(autouse=True)
def _fresh_mcp_host():
    # Each test that touches the process's MCP host gets a new one and leaves no processes behind.
    yield
    from mcp_servers.host import reset_host

    reset_host()


def mcp_admin_form(**overrides) -> dict:
    """The admin's MCP server form as a browser posts it: the stdio test server, with ``overrides``."""
    data = {
        "name": "test",
        "display_name": "",
        "description": "",
        "enabled": "on",
        "transport": "stdio",
        "timeout_seconds": "30",
        "command": sys.executable,
        "args": json.dumps([TEST_MCP_SERVER, "stdio"]),
        "cwd": "",
        "env": "{}",
        "url": "",
        "headers": "{}",
        "tool_allowlist": "[]",
        "auth": "none",
        "_save": "Save",
    }
    return {**data, **overrides}


def stdio_test_server(name: str = "test", **fields):
    """An unsaved McpServer row for the test MCP server over stdio."""
    from mcp_servers.models import McpServer

    return McpServer(name=name, transport="stdio", command=sys.executable, args=[TEST_MCP_SERVER, "stdio"], **fields)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def http_test_server(transport: str = "http"):
    """The test MCP server as a separate process over Streamable HTTP ("http") or legacy SSE ("sse")."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, TEST_MCP_SERVER, transport, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"test MCP server ({transport}) did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            # uvicorn waits for open streams (a client's listen stream) before exiting; don't wait long.
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_until(predicate, seconds: float = 15.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds}s")
        time.sleep(interval)


# --- providers pointed at the wire-level fakes ---------------------------------------------


@pytest.fixture(scope="session")
def provider_wires():
    from .fakes.providers import start_all, stop_all

    servers = start_all()
    yield servers
    stop_all(servers)


@pytest.fixture
def providers(provider_wires, monkeypatch, settings, django_db_blocker):
    """The four Provider rows pointed at the local fakes, keys set, retries fast; yields the fakes by kind."""
    from providers.models import Provider

    from .fakes.providers import base_url

    for server in provider_wires.values():
        server.reset()
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, "test-key")
    settings.PROVIDER_RETRY_BASE_DELAY = 0.01
    settings.PROVIDER_RETRY_MAX_DELAY = 0.05
    settings.PROVIDER_MAX_RETRIES = 1
    with django_db_blocker.unblock():
        # update_or_create: a transactional test before this one may have flushed the seeded rows.
        for kind, server in provider_wires.items():
            Provider.objects.update_or_create(
                name=kind,
                defaults={
                    "kind": kind,
                    "display_name": kind.title(),
                    "api_key_env": "" if kind == "ollama" else f"{kind.upper()}_API_KEY",
                    "base_url": base_url(kind, server),
                    "enabled": True,
                },
            )
    return provider_wires


# --- the platform as a real server process --------------------------------------------------


def _database_url() -> str:
    settings_dict = connections["default"].settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    return f"postgres://{settings_dict['USER']}{password}@{host}:{port}/{settings_dict['NAME']}"


class LiveUrl(str):
    """The base URL of a live server, with the server's process id."""

    pid: int


@contextlib.contextmanager
def platform_process(**env: str):
    """Daphne serving the platform on a free port, on the test database (use with transaction=True)."""
    import os

    from django.conf import settings

    port = free_port()
    ws_max = env.get("WS_MAX_MESSAGE_BYTES", str(settings.WS_MAX_MESSAGE_BYTES))
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would block the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in the finally below)
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "0",
        "SECRET_KEY": "test-secret-key-for-the-live-server",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_COOKIES": "0",
        "PROVIDER_RETRY_BASE_DELAY": "0.01",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **env,
    }
    process = subprocess.Popen(
        # The WebSocket cap as scripts/dev.sh passes it (WS_MAX_MESSAGE_BYTES).
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            f"--websocket-max-message-size={ws_max}",
            f"--websocket-max-frame-size={ws_max}",
            "platform_site.asgi:application",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"daphne exited: {log.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start")
            time.sleep(0.1)
        url = LiveUrl(f"http://127.0.0.1:{port}")
        url.pid = process.pid
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# --- the chat WebSocket, in process -------------------------------------------------------------------


async def ws_open(chat_id: int, key: str):
    """A WebSocket on the chat, authenticated by API key; returns it and its ``ready`` frame."""
    from channels.testing import WebsocketCommunicator

    from platform_site.asgi import application

    communicator = WebsocketCommunicator(
        application,
        f"/ws/chats/{chat_id}/",
        headers=[(b"origin", b"http://localhost"), (b"authorization", f"Bearer {key}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    ready = await communicator.receive_json_from()
    assert ready["type"] == "ready"
    return communicator, ready


async def ws_frames_until(communicator, stop) -> list[dict]:
    """Frames up to and including the first for which ``stop`` (a frame type, or a predicate) holds.

    Each frame may take up to 60 s (a first npx start of a Node server takes a while).
    """
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=60)
        frames.append(frame)
        if (frame["type"] == stop) if isinstance(stop, str) else stop(frame):
            return frames
