"""While Redis is away: REST answers (rate limits counted per process), a WebSocket turn reaches the tabs of its
worker, and once Redis is back everything goes through it again, without a restart.

The tests run their own redis-server, stopped and started again on the same port.
"""

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from datetime import timedelta

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test.utils import override_settings
from django.utils import timezone

from accounts.services import api_key_create
from accounts.throttling import rate_limit_window_left
from chats import tabs
from chats.consumers import group_name
from mcp_servers.models import McpServer
from mcp_servers.services import mcp_server_save
from platform_site.asgi import application
from platform_site.counters import counter_get

from .conftest import client_for, free_port, stdio_test_server, wait_until
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import Turn

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def start(self) -> None:
        if self.process is not None:
            return
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, seconds=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def _answers(self) -> bool:
        with contextlib.suppress(redis.ConnectionError):
            return bool(self.client().ping())
        return False


@pytest.fixture(scope="session")
def redis_server():
    # One server for the session, stopped and started by the tests: whatever a test leaves connected to it
    # (the process's turn-control listener) finds it there again afterwards.
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def _redis_settings(url: str) -> dict:
    """The production backends (platform_site.settings with REDIS_URL), on the test's server."""
    return {
        "REDIS_URL": url,
        "CACHES": {
            "default": {
                "BACKEND": "platform_site.cache.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "llmp",
                "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            }
        },
        "CHANNEL_LAYERS": {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [{"address": url, "socket_timeout": 30}], "prefix": "llmp:channels"},
            }
        },
    }


@pytest.fixture
def outage_redis(redis_server):
    """The cache and the channel layer on the test's own redis-server, which the test may stop."""
    redis_server.start()
    redis_server.client().flushall()
    with override_settings(**_redis_settings(redis_server.url)):
        yield redis_server
        redis_server.start()
        _wait_until_counted_in_redis(redis_server)  # the next test starts with Redis in use, not the fallback


def _wait_until_counted_in_redis(server: RedisServer) -> None:
    # The key exists only in Redis, so reading it back says the counters use Redis again (not the process).
    server.client().set(cache.make_key("outage-probe"), 5)
    wait_until(lambda: counter_get("outage-probe") == 5)


def _wait_for_fresh_window(seconds_needed: int = 5) -> None:
    # Fixed windows: don't start a burst right before one ends.
    while rate_limit_window_left() < seconds_needed:
        time.sleep(0.5)


def _counter_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "platform_site.counters" and r.levelname == "WARNING"]


# --- REST ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rest_calls_answer_while_redis_is_away_and_the_fallback_is_logged_once(user, outage_redis, caplog):
    api = client_for(user)
    assert api.get("/api/chats").status_code == 200
    caplog.set_level(logging.WARNING)

    # when
    outage_redis.stop()
    statuses = [api.get("/api/chats").status_code for _ in range(3)]
    during = _counter_warnings(caplog)
    outage_redis.start()
    _wait_until_counted_in_redis(outage_redis)
    after = _counter_warnings(caplog)

    # then
    assert statuses == [200, 200, 200]
    assert len(during) == 1
    assert during[0].startswith("Redis is unreachable (")
    assert during[0].endswith("rate limits are counted in each worker process's memory until it is back")
    assert len(after) == 2
    assert after[1].startswith("Redis is reachable again after ")
    assert api.get("/api/chats").status_code == 200


@pytest.mark.django_db
def test_an_mcp_server_saved_while_redis_is_away_is_stored_and_applied_here(
    outage_redis, caplog, django_capture_on_commit_callbacks
):
    outage_redis.stop()
    caplog.set_level(logging.WARNING)

    with django_capture_on_commit_callbacks(execute=True):  # the announcement runs after commit, as in admin
        mcp_server_save(server=stdio_test_server(name="saved"))

    assert McpServer.objects.filter(name="saved").exists()
    assert any(
        "could not announce an MCP configuration change" in r.getMessage()
        for r in caplog.records
        if r.name == "mcp_servers.broadcast"
    )


@pytest.mark.django_db
def test_the_rate_limit_holds_while_redis_is_away(user, outage_redis, settings):
    settings.RATE_LIMIT_PER_MINUTE = 2
    api = client_for(user)
    _wait_for_fresh_window()

    outage_redis.stop()
    statuses = [api.get("/api/chats").status_code for _ in range(3)]
    limited = api.get("/api/chats")

    assert statuses == [200, 200, 429]
    assert limited.json()["error"]["code"] == "throttled"
    assert 1 <= int(limited["Retry-After"]) <= 60


@pytest.mark.django_db
def test_a_redis_error_without_a_fallback_is_503_with_retry_after(user, outage_redis):
    # Cancelling a turn that another worker runs needs the channel layer: nothing stands in for it.
    chat = ChatFactory(
        owner=user,
        turn_id="t1",
        turn_owner="layer:llmp:channels.turns.elsewhere",
        turn_lease_until=timezone.now() + timedelta(seconds=60),
    )
    api = client_for(user)

    outage_redis.stop()
    response = api.post(f"/api/chats/{chat.pk}/cancel")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"


# --- WebSocket ----------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://localhost")


async def _open(chat_id: int, key: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/chats/{chat_id}/", headers=[ORIGIN, (b"authorization", f"Bearer {key}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "ready"
    return communicator


async def _until_done(communicator: WebsocketCommunicator) -> list[str]:
    types: list[str] = []
    while not types or types[-1] != "turn_done":
        types.append((await communicator.receive_json_from(timeout=20))["type"])
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]  # text deltas collapsed


TURN = ["turn_started", "text_delta", "message_done", "usage", "turn_done"]


class OtherWorker:
    """What a tab on another worker receives: the chat's group over the channel layer."""

    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id
        layer = get_channel_layer()
        assert layer is not None
        self.layer = layer
        self.frames: asyncio.Queue[dict] = asyncio.Queue()

    async def join(self, redis_server: RedisServer) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(group_name(self.chat_id), self.channel)
        self.list_itself(redis_server)
        # Never a timeout around layer.receive: a cancelled receive unsubscribes the channel.
        self._pump = asyncio.get_running_loop().create_task(self._receive_forever())

    def list_itself(self, redis_server: RedisServer) -> None:
        # As a worker with tabs on the chat (chats.tabs), so the worker running a turn publishes its events.
        redis_server.client().sadd(tabs._key(self.chat_id), "another-worker")

    async def _receive_forever(self) -> None:
        while True:
            await self.frames.put(await self.layer.receive(self.channel))

    async def until_reachable(self) -> None:
        """Until the layer delivers again (its subscriptions come back a moment after Redis does)."""
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                await self.layer.send(self.channel, {"type": "probe"})
            with contextlib.suppress(TimeoutError):
                if (await asyncio.wait_for(self.frames.get(), 0.2))["type"] == "probe":
                    return
        pytest.fail("the channel layer did not come back")

    async def turn(self) -> list[str]:
        types: list[str] = []
        while not types or types[-1] != "turn_done":
            message = await asyncio.wait_for(self.frames.get(), 20)
            if message["type"] == "probe":  # a late one of until_reachable's
                continue
            types.append(message["event"]["type"])
        return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]

    def close(self) -> None:
        self._pump.cancel()


async def _until_listed(redis_server: RedisServer, chat_id: int) -> bool:
    """Whether this worker lists itself again on the chat (chats.tabs) within RELIST_SECONDS and a margin."""
    for _ in range(int(tabs.RELIST_SECONDS * 10) + 20):
        if tabs.PROCESS_ID.encode() in redis_server.client().smembers(tabs._key(chat_id)):
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
async def test_websocket_turns_reach_this_workers_tabs_while_redis_is_away_and_all_tabs_after(
    user, outage_redis, providers
):
    chat = await sync_to_async(ChatFactory)(owner=user)
    key = (await sync_to_async(api_key_create)(owner=user, name="ws")).secret
    providers["openai"].push(Turn(text="While Redis is away."), Turn(text="Redis is back."))
    message = {"type": "message", "message": "Hi", "provider": "openai", "model": MODELS["openai"]}
    open_before = await _open(chat.pk, key)
    elsewhere = OtherWorker(chat.pk)
    await elsewhere.join(outage_redis)

    # when Redis is away
    outage_redis.stop()
    opened_during = await _open(chat.pk, key)  # the handshake does not fail
    await open_before.send_json_to(message)
    first_turn = [await _until_done(open_before), await _until_done(opened_during)]

    # when Redis is back (empty: the other worker lists itself again, as this one does)
    outage_redis.start()
    await elsewhere.until_reachable()
    elsewhere.list_itself(outage_redis)
    this_worker_listed = await _until_listed(outage_redis, chat.pk)
    await open_before.send_json_to({**message, "message": "Again"})
    second_turn = [await _until_done(open_before), await _until_done(opened_during), await elsewhere.turn()]

    assert first_turn == [TURN, TURN]
    assert this_worker_listed
    assert second_turn == [TURN, TURN, TURN]
    elsewhere.close()
    await open_before.disconnect()
    await opened_during.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_cancel_that_needs_redis_gets_an_error_frame_and_the_socket_stays_open(user, outage_redis):
    chat = await sync_to_async(ChatFactory)(
        owner=user,
        turn_id="t1",
        turn_owner="layer:llmp:channels.turns.elsewhere",
        turn_lease_until=timezone.now() + timedelta(seconds=60),
    )
    key = (await sync_to_async(api_key_create)(owner=user, name="ws")).secret
    communicator = await _open(chat.pk, key)

    outage_redis.stop()
    await communicator.send_json_to({"type": "cancel"})
    refused = await communicator.receive_json_from(timeout=10)
    await communicator.send_json_to({"type": "ping"})
    pong = await communicator.receive_json_from(timeout=10)

    assert (refused["type"], refused["code"], refused["retry_after"]) == ("error", "service_unavailable", 5)
    assert pong == {"type": "pong"}
    await communicator.disconnect()
