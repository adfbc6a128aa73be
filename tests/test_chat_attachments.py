"""MCP resources attached to a message: read from the real test server as the user, given to the model with
the message through the real provider SDKs, stored with it, replayed with it; every refusal a 400.

The MCP host reads its configuration from another thread, so these tests commit (transaction=True).
"""

import base64

import pytest
from asgiref.sync import sync_to_async
from mcp_types import BlobResourceContents

from accounts.services import api_key_create
from chats.models import Message
from chats.services.turns.attachments import Attachment, _block
from mcp_servers.host import get_host
from providers.types import TextBlock

from .conftest import stdio_test_server, ws_frames_until, ws_open
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import Turn

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = '\n\nAttached resource config://app (application/json):\n{"feature": true}'
GREETING = "\n\nAttached resource greeting://Ada (text/plain):\nHello, Ada!"


@pytest.fixture
def test_server():
    server = stdio_test_server(timeout_seconds=10)
    server.save()
    get_host().ready(20)
    return server


def _turn(api, chat_id, message="What does this say?", provider="openai", **body):
    return api.post(
        f"/api/chats/{chat_id}/messages",
        {"message": message, "provider": provider, "model": MODELS[provider], **body},
        format="json",
    )


def _new_chat(api) -> int:
    return api.post("/api/chats", {}, format="json").json()["id"]


def _attach(*uris, server="test"):
    return [{"server": server, "uri": uri} for uri in uris]


def _stored_user_messages(chat_id):
    return list(Message.objects.filter(chat_id=chat_id, role="user").order_by("position").values_list("content"))


def test_an_attached_resource_reaches_the_model_and_is_stored_with_the_message(api, providers, test_server):
    chat_id = _new_chat(api)
    providers["openai"].push(Turn(text="The feature is on; hello to Ada."))

    response = _turn(api, chat_id, attachments=_attach("config://app", "greeting://Ada"))

    assert response.status_code == 200, response.content
    sent = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert sent == [{"role": "user", "content": "What does this say?" + CONFIG + GREETING}]
    assert _stored_user_messages(chat_id) == [
        (
            [
                {"type": "text", "text": "What does this say?"},
                {"type": "text", "text": CONFIG},
                {"type": "text", "text": GREETING},
            ],
        )
    ]


def test_the_attachment_is_replayed_to_the_next_turn_on_another_provider(api, providers, test_server):
    chat_id = _new_chat(api)
    providers["openai"].push(Turn(text="It is on."))
    assert _turn(api, chat_id, attachments=_attach("config://app")).status_code == 200
    providers["anthropic"].push(Turn(text="Yes."))

    response = _turn(api, chat_id, "Still on?", provider="anthropic")

    assert response.status_code == 200, response.content
    sent = providers["anthropic"].requests_to("/v1/messages")[-1].json["messages"]
    assert sent[0] == {
        "role": "user",
        "content": [{"type": "text", "text": "What does this say?"}, {"type": "text", "text": CONFIG}],
    }
    assert sent[1:] == [
        {"role": "assistant", "content": [{"type": "text", "text": "It is on."}]},
        {"role": "user", "content": [{"type": "text", "text": "Still on?"}]},
    ]


def test_the_same_resource_twice_is_attached_once(api, providers, test_server):
    chat_id = _new_chat(api)
    providers["openai"].push(Turn(text="Once."))

    response = _turn(api, chat_id, attachments=_attach("config://app", "config://app"))

    assert response.status_code == 200, response.content
    sent = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert sent == [{"role": "user", "content": "What does this say?" + CONFIG}]


def test_a_server_the_user_may_not_use_is_unknown_to_them(api, other_user, providers, test_server):
    test_server.access_restricted = True
    test_server.save()
    test_server.allowed_users.set([other_user])
    chat_id = _new_chat(api)

    response = _turn(api, chat_id, attachments=_attach("config://app"))

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "unknown_mcp_server",
            "message": "Unknown MCP server(s): test.",
            "details": {"mcp_servers": ["test"]},
        }
    }
    assert providers["openai"].requests_to("/chat/completions") == []
    assert not Message.objects.filter(chat_id=chat_id).exists()


def test_a_resource_that_cannot_be_read_is_a_400_naming_it(api, providers, test_server):
    chat_id = _new_chat(api)

    response = _turn(api, chat_id, attachments=_attach("config://app", "nothing://here"))

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "attachment_unreadable",
            "message": "The resource 'nothing://here' of MCP server 'test' could not be read: "
            "Unknown resource: nothing://here",
            "details": {"attachments": [{"server": "test", "uri": "nothing://here", "code": "mcp_not_found"}]},
        }
    }
    assert providers["openai"].requests_to("/chat/completions") == []
    assert not Message.objects.filter(chat_id=chat_id).exists()


def test_more_attached_text_than_the_setting_allows_is_a_400(api, providers, test_server, settings):
    # config://app holds 17 characters, greeting://Ada 11
    settings.CHAT_MAX_ATTACHMENT_CHARS = 27
    chat_id = _new_chat(api)

    response = _turn(api, chat_id, attachments=_attach("config://app", "greeting://Ada"))

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "attachment_too_large",
            "message": "The attached resources hold 28 characters of text; at most 27 may be attached to a message.",
            "details": {"attachments": ["At most 27 characters in all; these have 28."]},
        }
    }
    assert not Message.objects.filter(chat_id=chat_id).exists()


def test_exactly_the_allowed_attached_text_is_accepted(api, providers, test_server, settings):
    settings.CHAT_MAX_ATTACHMENT_CHARS = 28
    providers["openai"].push(Turn(text="Fine."))

    response = _turn(api, _new_chat(api), attachments=_attach("config://app", "greeting://Ada"))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("attachments", "field_error"),
    [
        ([{"server": "test"}], {"attachments": {"0": {"uri": ["This field is required."]}}}),
        ([{"server": "test", "uri": "   "}], {"attachments": {"0": {"uri": ["This field may not be blank."]}}}),
        ([{"server": 1, "uri": "config://app"}], {"attachments": {"0": {"server": ["Must be a string."]}}}),
        ("config://app", {"attachments": ['Expected a list of items but got type "str".']}),
        (
            _attach(*[f"greeting://{n}" for n in range(11)]),
            {"attachments": ["Ensure this field has no more than 10 elements."]},
        ),
    ],
)
def test_malformed_attachments_are_400(api, providers, attachments, field_error):
    response = _turn(api, _new_chat(api), attachments=attachments)

    assert response.status_code == 400
    assert response.json()["error"]["details"] == field_error


async def test_the_websocket_message_frame_takes_attachments(user, providers, test_server):
    chat_id = await sync_to_async(lambda: _new_chat_for(user))()
    key = await sync_to_async(lambda: api_key_create(owner=user, name="ws").secret)()
    providers["openai"].push(Turn(text="Hello back."))
    communicator, _ = await ws_open(chat_id, key)

    await communicator.send_json_to(
        {
            "type": "message",
            "message": "Greet",
            "provider": "openai",
            "model": MODELS["openai"],
            "attachments": _attach("greeting://Ada"),
        }
    )
    frames = await ws_frames_until(communicator, "turn_done")

    assert frames[-1]["success"] is True
    sent = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert sent == [{"role": "user", "content": "Greet" + GREETING}]
    stored = await sync_to_async(_stored_user_messages)(chat_id)
    assert stored == [([{"type": "text", "text": "Greet"}, {"type": "text", "text": GREETING}],)]
    await communicator.disconnect()


async def test_a_websocket_attachment_that_cannot_be_read_is_an_error_frame(user, providers, test_server):
    chat_id = await sync_to_async(lambda: _new_chat_for(user))()
    key = await sync_to_async(lambda: api_key_create(owner=user, name="ws").secret)()
    communicator, _ = await ws_open(chat_id, key)

    await communicator.send_json_to(
        {"type": "message", "message": "Hi", "provider": "openai", "model": MODELS["openai"]}
        | {"attachments": _attach("nothing://here")}
    )
    frame = await communicator.receive_json_from(timeout=20)

    assert (frame["type"], frame["code"]) == ("error", "attachment_unreadable")
    assert frame["details"] == {"attachments": [{"server": "test", "uri": "nothing://here", "code": "mcp_not_found"}]}
    await communicator.disconnect()


def _new_chat_for(user) -> int:
    return ChatFactory(owner=user).pk


def test_a_binary_content_becomes_a_note_of_what_was_left_out():
    blob = BlobResourceContents(
        uri="file:///logo.png", mime_type="image/png", blob=base64.b64encode(b"\x89PNG" * 5).decode()
    )

    block, chars = _block(Attachment(server="files", uri="file:///logo.png"), blob)

    assert block == TextBlock(text="\n\n[binary resource file:///logo.png (image/png, 20 bytes) not included]")
    assert chars == 0
