"""Server-Sent Events from a real Daphne process, read by a real SSE client (httpx-sse)."""

import json
import time

import httpx
import pytest
from httpx_sse import connect_sse

from accounts.services import api_key_create
from chats.models import Message

from .conftest import platform_process, stdio_test_server, wait_until
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="sse").secret


def _events(base_url, key, chat, **body):
    with (
        httpx.Client(base_url=base_url, timeout=30) as client,
        connect_sse(
            client,
            "POST",
            f"/api/chats/{chat.pk}/messages",
            headers={"Authorization": f"Bearer {key}"},
            json={"message": "Hi", "provider": "openai", "model": MODELS["openai"], "stream": True, **body},
        ) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-cache"
        return [(event.event, json.loads(event.data)) for event in source.iter_sse()]


def test_a_turn_with_a_tool_round_streams_every_event_in_order(user, key, providers):
    stdio_test_server().save()
    providers["openai"].push(
        Turn(text="Let me echo.", tool_calls=[ToolCallSpec("test__echo", {"text": "ping"})]),
        Turn(text="The tool said ping.", chunk_size=3),
    )
    chat = ChatFactory(owner=user)

    with platform_process() as base_url:
        events = _events(base_url, key, chat)

    types = [name for name, _ in events]
    assert types[0] == "turn_started"
    assert types[-1] == "turn_done"
    assert types.index("tool_call_started") < types.index("tool_call_finished")
    # round 1 text, its message and usage, the tool, the tool message, round 2 text, message, usage, done
    collapsed = [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]
    assert collapsed == [
        "turn_started",
        "text_delta",
        "message_done",
        "usage",
        "tool_call_started",
        "tool_call_finished",
        "message_done",
        "text_delta",
        "message_done",
        "usage",
        "turn_done",
    ]
    final_text = "".join(data["text"] for name, data in events if name == "text_delta" and data["round"] == 2)
    assert final_text == "The tool said ping."
    finished = next(data for name, data in events if name == "tool_call_finished")
    assert (finished["name"], finished["content"], finished["is_error"]) == ("test__echo", "ping", False)
    done = events[-1][1]
    assert done["success"] is True
    assert done["message_ids"] == list(
        Message.objects.filter(chat=chat).order_by("position").values_list("pk", flat=True)
    )


def test_accept_header_asks_for_a_stream_and_errors_before_it_are_plain(user, key, providers):
    providers["openai"].push(Turn(text="ok"))
    chat = ChatFactory(owner=user)
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}

    with platform_process() as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        with connect_sse(
            client,
            "POST",
            f"/api/chats/{chat.pk}/messages",
            headers=headers,
            json={"message": "Hi", "provider": "openai", "model": MODELS["openai"]},
        ) as source:
            names = [event.event for event in source.iter_sse()]
        rejected = client.post(f"/api/chats/{chat.pk}/messages", headers=headers, json={"message": ""})

    assert names[0] == "turn_started"
    assert names[-1] == "turn_done"
    assert rejected.status_code == 400
    assert rejected.text.startswith("event: error\ndata: ")
    assert json.loads(rejected.text.split("data: ", 1)[1])["error"]["code"] == "empty_message"


def test_heartbeats_keep_a_quiet_stream_alive(user, key, providers):
    stdio_test_server(timeout_seconds=10).save()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__slow", {"seconds": 1.2})]), Turn(text="done"))
    chat = ChatFactory(owner=user)

    with (
        platform_process(CHAT_SSE_HEARTBEAT_SECONDS="0.3") as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
        client.stream(
            "POST",
            f"/api/chats/{chat.pk}/messages",
            headers={"Authorization": f"Bearer {key}"},
            json={"message": "Hi", "provider": "openai", "model": MODELS["openai"], "stream": True},
        ) as response,
    ):
        lines = list(response.iter_lines())

    assert lines[0] == ": stream open"
    assert lines.count(": keep-alive") >= 2
    assert "event: turn_done" in lines


def test_a_client_that_disconnects_still_gets_its_reply_stored(user, key, providers):
    stdio_test_server(timeout_seconds=10).save()
    providers["openai"].push(
        Turn(text="Starting.", tool_calls=[ToolCallSpec("test__slow", {"seconds": 1})]),
        Turn(text="All done while you were away."),
    )
    chat = ChatFactory(owner=user)

    with platform_process() as base_url:
        with (
            httpx.Client(base_url=base_url, timeout=30) as client,
            connect_sse(
                client,
                "POST",
                f"/api/chats/{chat.pk}/messages",
                headers={"Authorization": f"Bearer {key}"},
                json={"message": "Hi", "provider": "openai", "model": MODELS["openai"], "stream": True},
            ) as source,
        ):
            for event in source.iter_sse():
                if event.event == "tool_call_started":
                    break  # hang up mid-turn
        started = time.monotonic()
        final = wait_until(
            lambda: Message.objects.filter(chat=chat, role="assistant", finish_reason="end").first(), seconds=20
        )

    assert final.content == [{"type": "text", "text": "All done while you were away."}]
    assert time.monotonic() - started < 20
    assert list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True)) == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
