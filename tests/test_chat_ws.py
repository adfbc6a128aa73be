"""The chat WebSocket through the real ASGI stack (origin check, session/API-key auth, routing, channel layer)."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.services import api_key_create
from chats.models import Message
from platform_site.asgi import application

from .conftest import stdio_test_server
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture
def chat(user):
    return ChatFactory(owner=user)


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="ws").secret


def _communicator(chat_id, *headers, subprotocols=None):
    return WebsocketCommunicator(
        application, f"/ws/chats/{chat_id}/", headers=[ORIGIN, *headers], subprotocols=subprotocols
    )


async def _open(chat_id, key, **kwargs):
    communicator = _communicator(chat_id, (b"authorization", f"Bearer {key}".encode()), **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    ready = await communicator.receive_json_from()
    assert ready == {
        "type": "ready",
        "chat_id": chat_id,
        "turn_in_progress": False,
        "pending_approvals": [],
        "pending_elicitations": [],
    }
    return communicator


async def _until_done(communicator):
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=20)
        frames.append(frame)
        if frame["type"] == "turn_done":
            return frames


def _message(text="Hi", **extra):
    return {"type": "message", "message": text, "provider": "openai", "model": MODELS["openai"], **extra}


async def test_session_authentication(user, chat):
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = _communicator(chat.pk, (b"cookie", cookie))

    connected, _ = await communicator.connect()

    assert connected
    assert (await communicator.receive_json_from())["type"] == "ready"
    await communicator.disconnect()


async def test_api_key_in_the_subprotocol(chat, key):
    communicator = _communicator(chat.pk, subprotocols=["llmp.bearer", key])

    connected, subprotocol = await communicator.connect()

    assert connected
    assert subprotocol == "llmp.bearer"
    await communicator.disconnect()


@pytest.mark.parametrize("header", [None, (b"authorization", b"Bearer llmp_000000000000_wrong")])
async def test_unauthenticated_is_closed_with_4401(chat, header):
    communicator = _communicator(chat.pk, *([header] if header else []))

    await communicator.connect()

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4401}


async def test_another_users_chat_is_closed_with_4404(other_user, key):
    theirs = await sync_to_async(ChatFactory)(owner=other_user)
    communicator = _communicator(theirs.pk, (b"authorization", f"Bearer {key}".encode()))

    await communicator.connect()

    assert await communicator.receive_output() == {"type": "websocket.close", "code": 4404}


async def test_foreign_origin_is_refused(chat, key):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chats/{chat.pk}/",
        headers=[(b"origin", b"http://evil.example"), (b"authorization", f"Bearer {key}".encode())],
    )

    connected, _ = await communicator.connect()

    assert connected is False


async def test_a_turn_with_a_tool_round_streams_in_order(chat, key, providers):
    await sync_to_async(lambda: stdio_test_server().save())()
    providers["openai"].push(
        Turn(text="Echoing.", tool_calls=[ToolCallSpec("test__echo", {"text": "ping"})]), Turn(text="It said ping.")
    )
    communicator = await _open(chat.pk, key)

    await communicator.send_json_to(_message("Echo ping"))
    frames = await _until_done(communicator)

    types = [f["type"] for f in frames]
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
    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert (finished["name"], finished["server"], finished["content"]) == ("test__echo", "test", "ping")
    assert "".join(f["text"] for f in frames if f["type"] == "text_delta" and f["round"] == 2) == "It said ping."
    assert frames[-1]["success"] is True
    roles = await sync_to_async(
        lambda: list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True))
    )()
    assert roles == ["user", "assistant", "tool", "assistant"]
    await communicator.disconnect()


async def test_cancel_stops_the_turn(chat, key, providers):
    await sync_to_async(lambda: stdio_test_server(timeout_seconds=10).save())()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__slow", {"seconds": 8})]))
    communicator = await _open(chat.pk, key)

    await communicator.send_json_to(_message())
    while (await communicator.receive_json_from(timeout=20))["type"] != "tool_call_started":
        pass
    await communicator.send_json_to({"type": "cancel"})
    frames = await _until_done(communicator)

    assert frames[-1]["finish_reason"] == "cancelled"
    assert next(f for f in frames if f["type"] == "tool_call_finished")["is_error"] is True
    await communicator.disconnect()


async def test_bad_frames_get_errors_and_the_connection_stays_open(chat, key, providers, settings):
    settings.CHAT_WS_MAX_FRAME_BYTES = 1000
    communicator = await _open(chat.pk, key)

    await communicator.send_to(text_data="{not json")
    invalid = await communicator.receive_json_from()
    await communicator.send_json_to({"type": "dance"})
    unknown = await communicator.receive_json_from()
    await communicator.send_to(text_data=json.dumps(_message("x" * 2000)))
    oversized = await communicator.receive_json_from()
    await communicator.send_json_to(_message(""))
    empty = await communicator.receive_json_from()
    await communicator.send_json_to({"type": "ping"})
    pong = await communicator.receive_json_from()

    assert [invalid["code"], unknown["code"], oversized["code"], empty["code"]] == [
        "invalid_json",
        "unknown_type",
        "frame_too_large",
        "empty_message",
    ]
    assert pong == {"type": "pong"}
    assert await sync_to_async(Message.objects.count)() == 0
    await communicator.disconnect()


async def test_one_turn_at_a_time_and_every_tab_sees_it(chat, key, providers):
    await sync_to_async(lambda: stdio_test_server(timeout_seconds=10).save())()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__slow", {"seconds": 0.5})]), Turn(text="Done."))
    first = await _open(chat.pk, key)
    second = await _open(chat.pk, key)

    await first.send_json_to(_message("Go"))
    assert (await first.receive_json_from(timeout=20))["type"] == "turn_started"
    await second.send_json_to(_message("Me too"))
    busy = await second.receive_json_from(timeout=20)
    while busy["type"] != "error":  # the second tab also receives the first tab's events
        busy = await second.receive_json_from(timeout=20)
    first_frames = await _until_done(first)
    second_frames = await _until_done(second)

    assert busy["code"] == "turn_in_progress"
    assert first_frames[-1]["success"] is True
    assert [f["type"] for f in second_frames if f["type"] != "error"][-1] == "turn_done"
    assert [f for f in second_frames if f["type"] == "text_delta"] == [
        f for f in first_frames if f["type"] == "text_delta"
    ]
    await first.disconnect()
    await second.disconnect()


async def test_rate_limit_applies_to_websocket_turns(chat, key, providers, settings):
    settings.RATE_LIMIT_PER_MINUTE = 1
    providers["openai"].push(Turn(text="one"))
    communicator = await _open(chat.pk, key)

    await communicator.send_json_to(_message("first"))
    await _until_done(communicator)
    await communicator.send_json_to(_message("second"))
    limited = await communicator.receive_json_from()

    assert limited["code"] == "throttled"
    assert limited["retry_after"] >= 1
    await communicator.disconnect()
