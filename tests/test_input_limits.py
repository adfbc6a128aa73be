"""Input limits: JSON nesting, chunked bodies, JSON errors everywhere under /api/, bounded numbers, frame bytes."""

import http.client
import json
import re
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.module_loading import import_string
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.services import api_key_create
from chats.apis import TurnInputSerializer
from chats.models import Chat
from platform_site.asgi import application

from .conftest import platform_process
from .factories import ChatFactory

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = (b"origin", b"http://localhost")
DEEP = '{"message": ' + "[" * 100_000 + "]" * 100_000 + "}"


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="limits").secret


# --- JSON nesting -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/chats", "/api/chat", "/api/prompts"])
def test_deeply_nested_json_body_is_400_invalid_json(api, path):
    response = api.generic("POST", path, DEEP, content_type="application/json")

    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json"
    assert error["message"] == "JSON may nest arrays and objects at most 64 levels deep."


@pytest.mark.django_db
def test_turn_on_a_chat_refuses_deep_json_too(api, user):
    chat = ChatFactory(owner=user)

    response = api.generic("POST", f"/api/chats/{chat.pk}/messages", DEEP, content_type="application/json")

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


@pytest.mark.django_db
def test_nesting_up_to_the_limit_is_parsed_and_brackets_in_strings_do_not_count(api, settings):
    settings.JSON_MAX_DEPTH = 3
    at_limit = '{"title": "[[[[{{{{", "mcp_servers": [], "x": [[]]}'
    over = '{"title": "t", "x": [[[]]]}'

    accepted = api.generic("POST", "/api/chats", at_limit, content_type="application/json")
    refused = api.generic("POST", "/api/chats", over, content_type="application/json")

    assert accepted.status_code == 201
    assert accepted.json()["title"] == "[[[[{{{{"
    assert refused.status_code == 400
    assert _error(refused)["code"] == "invalid_json"
    assert list(Chat.objects.values_list("title", flat=True)) == ["[[[[{{{{"]


@pytest.mark.django_db(transaction=True)
async def test_deeply_nested_websocket_frame_is_an_error_frame_and_the_socket_stays_open(user, key):
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator = WebsocketCommunicator(
        application, f"/ws/chats/{chat.pk}/", headers=[ORIGIN, (b"authorization", f"Bearer {key}".encode())]
    )
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "ready"

    await communicator.send_to(text_data='{"type": "message", "message": ' + "[" * 100_000 + "]" * 100_000 + "}")
    error = await communicator.receive_json_from()
    await communicator.send_json_to({"type": "ping"})

    assert error == {
        "type": "error",
        "code": "invalid_json",
        "message": "JSON may nest arrays and objects at most 64 levels deep.",
        "details": None,
    }
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()


# --- chunked bodies (no Content-Length) -------------------------------------------------------------


async def _asgi_post(path: str, key: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST through the ASGI app as a server passes a chunked body: no content-length, several messages."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    for index, chunk in enumerate(chunks):
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1})
    start = await communicator.receive_output(timeout=20)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=20)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=5)
    return start["status"], json.loads(body)


@pytest.mark.django_db(transaction=True)
async def test_chunked_body_is_read(key):
    status, body = await _asgi_post("/api/chats", key, [b'{"title"', b': "x"}'])

    assert status == 201
    assert body["title"] == "x"
    assert await Chat.objects.values_list("title", flat=True).aget() == "x"


@pytest.mark.django_db(transaction=True)
async def test_chunked_body_reaches_async_views(key):
    # A body read as empty would be "message: This field is required."; the turn's own check proves it arrived.
    status, body = await _asgi_post("/api/chat", key, [b'{"message": ', b'"   "}'])

    assert status == 400
    assert body["error"]["code"] == "empty_message"


@pytest.mark.django_db(transaction=True)
async def test_chunked_body_over_the_limit_is_413(key):
    chunk = b"x" * (1024 * 1024)
    chunks = [b'{"title": "', *[chunk] * 5, b'"}']

    status, body = await _asgi_post("/api/chats", key, chunks)

    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert await Chat.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
def test_chunked_body_through_a_real_server(user):
    key = api_key_create(owner=user, name="chunked").secret
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    with platform_process() as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        connection.request("POST", "/api/chats", body=iter([b'{"title"', b': "x"}']), headers=headers)
        created = connection.getresponse()
        created_body = json.loads(created.read())
        big = iter([b'{"title": "', *[b"x" * (1024 * 1024)] * 5, b'"}'])
        connection.request("POST", "/api/chats", body=big, headers=headers)
        refused = connection.getresponse()
        refused_body = json.loads(refused.read())
        connection.close()

    assert created.status == 201
    assert created_body["title"] == "x"
    assert refused.status == 413
    assert refused_body["error"]["code"] == "request_too_large"
    assert list(Chat.objects.values_list("title", flat=True)) == ["x"]


# --- JSON under /api/ ---------------------------------------------------------------------------------


def _api_paths() -> list[str]:
    """Every route under /api/, path converters filled with 1 (or "x" for strings)."""
    paths = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/"):
                route = re.sub(r"<int:\w+>", "1", route)
                paths.append("/" + re.sub(r"<(?:\w+:)?\w+>", "x", route).removeprefix("^"))

    walk(get_resolver().url_patterns, "")
    return sorted(set(paths) | {"/api/keys/abc", "/api/no/such/thing"})


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_every_api_path_answers_unsafe_methods_in_json_with_a_session_and_no_csrf_token(user, method):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    anonymous = Client(enforce_csrf_checks=True)

    for path in _api_paths():
        for who in (client, anonymous):
            response = who.generic(method, path, "{}", content_type="application/json")
            assert response.status_code >= 400, (method, path)
            assert response["Content-Type"] == "application/json", (method, path, response.content[:200])
            assert set(response.json()["error"]) == {"code", "message", "details"}, (method, path)


def test_csrf_failure_view_answers_json_under_api_and_html_elsewhere(settings):
    failure_view = import_string(settings.CSRF_FAILURE_VIEW)
    factory = RequestFactory()

    api_response = failure_view(factory.delete("/api/keys/abc"), reason="CSRF cookie not set.")
    page_response = failure_view(factory.post("/login/"), reason="CSRF cookie not set.")

    assert api_response.status_code == 403
    assert json.loads(api_response.content) == {
        "error": {"code": "csrf_failed", "message": "CSRF check failed: CSRF cookie not set.", "details": None}
    }
    assert page_response.status_code == 403
    assert page_response["Content-Type"].startswith("text/html")


# --- bounded numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("thinking_budget", 10**29),
        ("thinking_budget", 1_000_001),
        ("thinking_budget", 0),
        ("max_tokens", 1_000_001),
        ("max_tokens", 0),
        ("temperature", 2.5),
        ("temperature", -0.1),
    ],
)
def test_turn_numbers_outside_their_bounds_are_refused(field, value):
    serializer = TurnInputSerializer(data={"message": "hi", field: value})

    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


def test_turn_numbers_at_their_bounds_are_accepted():
    serializer = TurnInputSerializer(
        data={"message": "hi", "thinking_budget": 1_000_000, "max_tokens": 1_000_000, "temperature": 2}
    )

    assert serializer.is_valid(), serializer.errors


@pytest.mark.django_db
def test_huge_thinking_budget_is_400_before_any_provider(api, user):
    chat = ChatFactory(owner=user)

    response = api.post(f"/api/chats/{chat.pk}/messages", {"message": "hi", "thinking_budget": 10**29}, format="json")

    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid"
    assert error["message"] == "thinking_budget: Ensure this value is less than or equal to 1000000."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"message": "hi", "chat_id": 2**70}),
        ("/api/chat", {"message": "hi", "system_prompt_id": 2**70}),
        ("/api/chats", {"system_prompt_id": 2**70}),
    ],
)
def test_ids_beyond_any_row_are_a_4xx_not_a_500(api, path, body):
    response = api.post(path, body, format="json")

    assert 400 <= response.status_code < 500
    assert set(_error(response)) == {"code", "message", "details"}


# --- WebSocket frame bytes ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_frame_limit_counts_utf8_bytes_not_characters(user, key, settings):
    settings.CHAT_WS_MAX_FRAME_BYTES = 1000
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator = WebsocketCommunicator(
        application, f"/ws/chats/{chat.pk}/", headers=[ORIGIN, (b"authorization", f"Bearer {key}".encode())]
    )
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "ready"
    # 400 characters, 1,200 bytes of UTF-8: over the limit.
    frame = json.dumps({"type": "ping", "pad": "語" * 390}, ensure_ascii=False)
    assert len(frame) < 1000 < len(frame.encode())

    await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from()

    assert error["code"] == "frame_too_large"
    assert error["message"] == "Frames are limited to 1000 bytes."
    await communicator.disconnect()


def _send_and_wait(ws, frame: str) -> None:
    ws.send(frame)
    ws.recv(timeout=20)


@pytest.mark.django_db(transaction=True)
def test_real_server_answers_frame_too_large_up_to_its_cap_then_closes(user):
    key = api_key_create(owner=user, name="ws").secret
    chat = ChatFactory(owner=user)
    headers = {"Authorization": f"Bearer {key}", "Origin": "http://127.0.0.1"}

    with platform_process(WS_MAX_MESSAGE_BYTES=str(2 * 1024 * 1024)) as url:
        ws_url = url.replace("http://", "ws://") + f"/ws/chats/{chat.pk}/"
        with connect(ws_url, additional_headers=headers, max_size=None, open_timeout=20) as ws:
            assert json.loads(ws.recv(timeout=20))["type"] == "ready"
            # 1.5 MiB: past daphne's default cap (1 MiB) and the consumer's (512 KiB), under the server's.
            ws.send(json.dumps({"type": "ping", "pad": "x" * (1536 * 1024)}))
            too_large = json.loads(ws.recv(timeout=20))
            ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(ws.recv(timeout=20))
            # Past the server's own cap the server drops the connection (daphne without a close frame).
            # The drop can land while the frame is still being written, so the send may raise too.
            with pytest.raises(ConnectionClosed):
                _send_and_wait(ws, "x" * (3 * 1024 * 1024))

    assert too_large["code"] == "frame_too_large"
    assert too_large["message"] == "Frames are limited to 524288 bytes."
    assert pong == {"type": "pong"}


@pytest.mark.parametrize(
    ("path", "flag"),
    [
        ("scripts/dev.sh", '--websocket-max-message-size "$ws_max"'),
        ("scripts/dev.sh", '--ws-max-size "${WS_MAX_MESSAGE_BYTES:-4194304}"'),
        ("Dockerfile", "--ws-max-size ${WS_MAX_MESSAGE_BYTES:-4194304}"),
        ("docker-compose.yml", "--ws-max-size $${WS_MAX_MESSAGE_BYTES:-4194304}"),
    ],
)
def test_every_server_command_sets_the_websocket_cap(path, flag, settings):
    assert flag in (ROOT / path).read_text()
    assert settings.WS_MAX_MESSAGE_BYTES == 4194304 > settings.CHAT_WS_MAX_FRAME_BYTES
