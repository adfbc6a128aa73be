"""The turn path under concurrency, against live server processes on the test database.

No deadlock whatever the pool size, one turn per chat across processes, cancel from another worker, MCP
servers connecting at boot. No timed assertions: the tests wait on state (rows, events, processes).
"""

import asyncio
import contextlib
import json
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from httpx_sse import aconnect_sse

from accounts.services import api_key_create
from chats.models import Chat, Message

from .conftest import TEST_MCP_SERVER, platform_process, stdio_test_server, wait_until
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN = {"message": "Hi", "provider": "openai", "model": MODELS["openai"], "tools": False}


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="rules").secret


@pytest.fixture
def slow_stream(providers, monkeypatch):
    """Replies stream in pieces 50 ms apart, so turns overlap; ``reply(turn)`` makes every reply the same."""
    fake = providers["openai"]
    monkeypatch.setattr(fake, "stream_delay", 0.05)

    def reply(turn: Turn) -> None:
        monkeypatch.setattr(fake, "next_reply", lambda default=None: turn)

    return reply


def _roles(chat: Chat) -> list[str]:
    return list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True))


async def _turns(base_url: str, key: str, chat_ids: list[int]) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        limits=httpx.Limits(max_connections=len(chat_ids)),
    ) as client:
        return await asyncio.gather(*(client.post(f"/api/chats/{pk}/messages", json=PLAIN) for pk in chat_ids))


def test_64_concurrent_turns_complete_with_a_database_pool_of_two(user, key, slow_stream):
    # given 64 chats and a pool of at most 2 connections (PostgreSQL; SQLite has no pool, same code path)
    slow_stream(Turn(text="one two three four", chunk_size=4))
    chats = [ChatFactory(owner=user) for _ in range(64)]

    with platform_process(DATABASE_POOL_MAX_SIZE="2", DATABASE_POOL_MIN_SIZE="1", RATE_LIMIT_PER_MINUTE="10000") as url:
        # when they all send a turn at once, and another request comes in while they stream
        async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
            turns = asyncio.ensure_future(_turns(url, key, [chat.pk for chat in chats]))
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
                listing = await client.get("/api/chats", timeout=60)
            return await turns, listing

        responses, listing = asyncio.run(scenario())

    # then every turn answered 200 with its reply, and every history is exactly user + assistant
    assert [response.status_code for response in responses] == [200] * 64, {r.text for r in responses}
    assert {response.json()["response"] for response in responses} == {"one two three four"}
    assert listing.status_code == 200
    assert listing.json()["count"] == 64
    for chat in chats:
        assert _roles(chat) == ["user", "assistant"]
    assert not Chat.objects.exclude(turn_id="").exists()


def test_64_concurrent_turns_that_create_their_chats_complete_with_a_pool_of_two(user, key, slow_stream):
    # given a pool of at most 2 connections, and turns whose chat rows are written while the model answers
    slow_stream(Turn(text="one two three four", chunk_size=4))

    with platform_process(DATABASE_POOL_MAX_SIZE="2", DATABASE_POOL_MIN_SIZE="1", RATE_LIMIT_PER_MINUTE="10000") as url:
        # when 64 one-shot turns arrive at once
        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
                limits=httpx.Limits(max_connections=64),
            ) as client:
                return await asyncio.gather(*(client.post("/api/chat", json=PLAIN) for _ in range(64)))

        responses = asyncio.run(scenario())

    # then each answered 200 with a chat of its own holding exactly its user message and reply, all free again
    assert [response.status_code for response in responses] == [200] * 64, {r.text for r in responses}
    chat_ids = {response.json()["chat_id"] for response in responses}
    assert len(chat_ids) == 64
    for chat in Chat.objects.filter(pk__in=chat_ids):
        assert _roles(chat) == ["user", "assistant"]
    assert Chat.objects.filter(owner=user).count() == 64
    assert not Chat.objects.exclude(turn_id="").exists()


def test_one_turn_per_chat_across_two_processes(user, key, slow_stream):
    # given one chat and two independent server processes
    slow_stream(Turn(text="the only reply " * 5, chunk_size=6))
    chat = ChatFactory(owner=user)

    with platform_process() as first, platform_process() as second:

        async def scenario() -> list[httpx.Response]:
            async with (
                httpx.AsyncClient(base_url=first, headers={"Authorization": f"Bearer {key}"}, timeout=60) as a,
                httpx.AsyncClient(base_url=second, headers={"Authorization": f"Bearer {key}"}, timeout=60) as b,
            ):
                # when six turns arrive at once, alternating between the processes
                return await asyncio.gather(
                    *((a if i % 2 else b).post(f"/api/chats/{chat.pk}/messages", json=PLAIN) for i in range(6))
                )

        responses = asyncio.run(scenario())

    # then one is answered and five get 409 turn_in_progress; the history is one clean exchange
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 409, 409, 409, 409, 409]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"turn_in_progress"}
    rows = list(Message.objects.filter(chat=chat).order_by("position").values_list("position", "role"))
    assert rows == [(0, "user"), (1, "assistant")]


def test_sse_and_one_shot_turns_on_a_busy_chat_get_409(user, key, slow_stream):
    slow_stream(Turn(text="slow " * 20, chunk_size=5))
    chat = ChatFactory(owner=user)

    with platform_process() as url:

        async def scenario() -> tuple[int, list[httpx.Response]]:
            async with (
                httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c,
                aconnect_sse(c, "POST", f"/api/chats/{chat.pk}/messages", json={**PLAIN, "stream": True}) as source,
            ):
                events = source.aiter_sse()
                async for event in events:
                    if event.event == "text_delta":
                        break  # the turn is streaming: the chat is busy
                busy = [
                    await c.post(f"/api/chats/{chat.pk}/messages", json=PLAIN),
                    await c.post(f"/api/chats/{chat.pk}/messages", json={**PLAIN, "stream": True}),
                    await c.post("/api/chat", json={**PLAIN, "chat_id": chat.pk}),
                ]
                done = [e async for e in events if e.event == "turn_done"]
                return len(done), busy

        finished, busy = asyncio.run(scenario())

    assert finished == 1
    assert [response.status_code for response in busy] == [409, 409, 409]
    assert {response.json()["error"]["code"] for response in busy} == {"turn_in_progress"}
    assert _roles(chat) == ["user", "assistant"]


@pytest.mark.skipif(not settings.REDIS_URL, reason="two processes reach each other over the Redis channel layer")
def test_cancel_over_rest_reaches_the_turn_on_another_process(user, key, providers):
    stdio_test_server(timeout_seconds=30).save()
    providers["openai"].push(Turn(text="Working.", tool_calls=[ToolCallSpec("test__slow", {"seconds": 20})]))
    chat = ChatFactory(owner=user)

    with platform_process() as runner, platform_process() as other:

        async def scenario() -> tuple[list[tuple[str, dict]], httpx.Response, httpx.Response]:
            headers = {"Authorization": f"Bearer {key}"}
            async with (
                httpx.AsyncClient(base_url=runner, headers=headers, timeout=60) as a,
                httpx.AsyncClient(base_url=other, headers=headers, timeout=60) as b,
            ):
                events = []
                cancel = None
                async with aconnect_sse(
                    a, "POST", f"/api/chats/{chat.pk}/messages", json={**PLAIN, "tools": True, "stream": True}
                ) as source:
                    async for event in source.aiter_sse():
                        events.append((event.event, json.loads(event.data)))
                        if event.event == "tool_call_started":
                            cancel = await b.post(f"/api/chats/{chat.pk}/cancel")
                again = await b.post(f"/api/chats/{chat.pk}/cancel")
                assert cancel is not None
                return events, cancel, again

        events, cancel, again = asyncio.run(scenario())

    assert cancel.status_code == 202
    assert cancel.json() == {"cancelled": True}
    assert events[-1][0] == "turn_done"
    assert events[-1][1]["finish_reason"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "no_turn_in_progress"
    assert _roles(chat) == ["user", "assistant", "tool"]


def test_a_chat_whose_turn_lease_ran_out_takes_a_new_turn(api, user, providers):
    # given a chat still marked busy by a worker that died (its lease is in the past)
    chat = ChatFactory(owner=user)
    Chat.objects.filter(pk=chat.pk).update(
        turn_id="dead", turn_owner="local:gone", turn_lease_until=timezone.now() - timedelta(seconds=1)
    )
    providers["openai"].push(Turn(text="fresh"))

    response = api.post(f"/api/chats/{chat.pk}/messages", PLAIN, format="json")

    assert response.status_code == 200
    assert response.json()["response"] == "fresh"
    chat.refresh_from_db()
    assert (chat.turn_id, chat.turn_lease_until) == ("", None)


def test_a_chat_with_a_live_lease_refuses_a_turn_and_cancel_with_none_running_is_409(api, user, providers):
    chat = ChatFactory(owner=user)
    assert api.post(f"/api/chats/{chat.pk}/cancel").json()["error"]["code"] == "no_turn_in_progress"
    Chat.objects.filter(pk=chat.pk).update(
        turn_id="busy", turn_owner="local:other", turn_lease_until=timezone.now() + timedelta(seconds=60)
    )

    response = api.post(f"/api/chats/{chat.pk}/messages", PLAIN, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "turn_in_progress"
    assert _roles(chat) == []
    assert api.post("/api/chats/999999/cancel").status_code == 404


def _children(pid: int) -> list[str]:
    """Command lines of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_mcp_servers_connect_when_the_web_process_starts(user):
    # given a configured stdio MCP server
    stdio_test_server().save()

    # when a web process starts and nobody has made a request yet
    with platform_process() as url:
        # then it has already started the server's process
        assert wait_until(lambda: any(TEST_MCP_SERVER in line for line in _children(url.pid)), seconds=20)


def test_storage_failures_are_retried_once_then_reported_with_the_chat_freed(api, user, providers, monkeypatch):
    from django.db import OperationalError

    from chats.services.turns.history import TurnStore

    chat = ChatFactory(owner=user)
    real = TurnStore.store_assistant
    failures = {"left": 1}

    def flaky(self, *args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("connection lost")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TurnStore, "store_assistant", flaky)

    # one failure: retried, stored once
    providers["openai"].push(Turn(text="kept"))
    first = api.post(f"/api/chats/{chat.pk}/messages", PLAIN, format="json")
    assert first.status_code == 200
    assert _roles(chat) == ["user", "assistant"]

    # failing every time: the client is told, with the text it was sent; the chat is free again
    failures["left"] = 2
    providers["openai"].push(Turn(text="not stored"))
    second = api.post(f"/api/chats/{chat.pk}/messages", PLAIN, format="json")
    assert second.status_code == 503
    body = second.json()
    assert (body["success"], body["error"]["code"], body["response"]) == (False, "storage_failed", "not stored")
    assert _roles(chat) == ["user", "assistant", "user"]
    assert Chat.objects.get(pk=chat.pk).turn_id == ""


@pytest.mark.skipif(not settings.REDIS_URL, reason="workers reach each other over the Redis channel layer")
def test_a_websocket_turn_reaches_a_tab_on_another_worker(user, key, providers):
    import websockets
    from websockets.typing import Origin

    providers["openai"].push(Turn(text="seen on both workers", chunk_size=5))
    chat = ChatFactory(owner=user)

    with platform_process() as first, platform_process() as second:

        async def tab(url: str):
            return await websockets.connect(
                f"{url.replace('http', 'ws')}/ws/chats/{chat.pk}/",
                additional_headers={"Authorization": f"Bearer {key}"},
                origin=Origin("http://127.0.0.1"),
            )

        async def until_done(ws) -> str:
            text = ""
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "text_delta":
                    text += event["text"]
                elif event["type"] == "turn_done":
                    return text
            raise AssertionError("closed before turn_done")

        async def scenario() -> tuple[str, str]:
            here, there = await tab(first), await tab(second)
            try:
                assert json.loads(await here.recv())["type"] == "ready"
                assert json.loads(await there.recv())["type"] == "ready"
                await here.send(json.dumps({"type": "message", **PLAIN}))
                return await asyncio.wait_for(asyncio.gather(until_done(here), until_done(there)), 30)
            finally:
                await here.close()
                await there.close()

        on_first, on_second = asyncio.run(scenario())

    assert on_first == on_second == "seen on both workers"
