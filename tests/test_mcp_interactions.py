"""A tool's server asks the host mid-call: sampling (a model's answer) and elicitation (the user's).

Driven through real turns over the WebSocket, with ``@modelcontextprotocol/server-everything`` (its
``trigger-sampling-request``, ``trigger-elicitation-request`` and ``trigger-url-elicitation`` tools) and
models scripted through the real provider SDKs.
"""

import asyncio
import json
import shutil

import httpx
import pytest
from asgiref.sync import sync_to_async

from accounts.services import api_key_create
from chats.models import Chat, Message, ToolApproval, ToolExecution
from mcp_servers.elicitation import elicitation_content_validate, schema_defaults
from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from platform_site.exceptions import ValidationFailed
from providers.models import Provider
from usage.models import UsageRecord

from .conftest import platform_process, stdio_test_server, wait_until, ws_frames_until, ws_open
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

NPX = shutil.which("npx")
NODE_SERVERS_VERSION = "2026.8.31"
MESSAGE = {"type": "message", "message": "Go", "provider": "openai", "model": MODELS["openai"]}
SAMPLE = ToolCallSpec("everything__trigger-sampling-request", {"prompt": "Say hi", "maxTokens": 20})
ELICIT = ToolCallSpec("everything__trigger-elicitation-request", {})
FORM_DEFAULTS = {
    "firstLine": "It was a dark and stormy night.",
    "integer": 42,
    "number": 3.14,
    "untitledSingleSelectEnum": "Monica",
    "untitledMultipleSelectEnum": ["Guitar"],
    "titledSingleSelectEnum": "hero-1",
    "titledMultipleSelectEnum": ["fish-1"],
    "legacyTitledEnum": "pet-1",
}

needs_npx = pytest.mark.skipif(NPX is None, reason="npx is not installed")


def _everything(**fields) -> McpServer:
    assert NPX is not None
    server = McpServer.objects.create(
        name="everything",
        transport="stdio",
        command=NPX,
        args=["-y", f"@modelcontextprotocol/server-everything@{NODE_SERVERS_VERSION}"],
        timeout_seconds=60,
        **fields,
    )
    get_host().ready(120)
    return server


def _execution(chat: Chat) -> ToolExecution:
    return ToolExecution.objects.get(message__chat=chat)


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="interactions").secret


# --- the form's schema, on its own ---------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number", "default": 0.5},
        "ok": {"type": "boolean", "default": True},
        "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
        "hero": {"type": "string", "oneOf": [{"const": "h1", "title": "One"}, {"const": "h2", "title": "Two"}]},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 1},
    },
    "required": ["name", "ok"],
}


def test_accepted_content_gets_the_schema_defaults_for_fields_left_out():
    answer = elicitation_content_validate(schema=SCHEMA, content={"name": "Bo", "age": 30.0, "hero": "h2"})

    assert answer == {"name": "Bo", "age": 30, "hero": "h2", "score": 0.5, "ok": True, "color": "red"}
    assert schema_defaults(SCHEMA) == {"score": 0.5, "ok": True, "color": "red"}


def test_content_that_does_not_fit_the_form_names_each_field():
    content = {"age": 200, "score": "high", "ok": "yes", "color": "blue", "hero": "h9", "tags": ["a", "b"], "x": 1}

    with pytest.raises(ValidationFailed) as caught:
        elicitation_content_validate(schema=SCHEMA, content=content)

    assert caught.value.code == "invalid_elicitation_content"
    assert caught.value.details == {
        "age": ["At most 150."],
        "score": ["Must be a number."],
        "ok": ["Must be true or false."],
        "color": ["Must be one of ['red', 'green']."],
        "hero": ["Must be one of ['h1', 'h2']."],
        "tags": ["Choose at most 1."],
        "x": ["Not a field of this form."],
        "name": ["Required."],
    }


# --- sampling ------------------------------------------------------------------------------------


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_sampling_allowed_runs_on_the_turns_model_and_is_stored(user, key, providers):
    await sync_to_async(_everything)(sampling_policy="allow")
    providers["openai"].push(
        Turn(tool_calls=[SAMPLE]),
        Turn(text="Hello from the model", input_tokens=7, output_tokens=3),
        Turn(text="Done."),
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    kinds = [frame["type"] for frame in frames]
    assert "tool_approval_required" not in kinds
    asked = next(f for f in frames if f["type"] == "sampling_request")
    assert (asked["server"], asked["max_tokens"], asked["system_prompt"]) == (
        "everything",
        20,
        "You are a helpful test server.",
    )
    assert asked["messages"] == [{"role": "user", "text": "Resource trigger-sampling-request context: Say hi"}]
    answered = next(f for f in frames if f["type"] == "sampling_result")
    assert (answered["text"], answered["stop_reason"], answered["error"]) == ("Hello from the model", "endTurn", None)
    assert answered["tool_call_id"] == asked["tool_call_id"]
    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert finished["is_error"] is False
    assert "Hello from the model" in finished["content"]
    assert frames[-1]["success"] is True
    # the sampling request went to the turn's provider with the server's system prompt and limit
    sampled = providers["openai"].requests_to("/chat/completions")[1].json
    assert sampled["messages"][0] == {"role": "system", "content": "You are a helpful test server."}
    assert sampled.get("max_tokens", sampled.get("max_completion_tokens")) == 20
    records = await sync_to_async(lambda: list(UsageRecord.objects.filter(user=user).order_by("id")))()
    assert [(r.input_tokens, r.output_tokens, r.chat_id) for r in records] == [
        (10, 5, chat.pk),
        (7, 3, chat.pk),
        (10, 5, chat.pk),
    ]
    execution = await sync_to_async(_execution)(chat)
    (interaction,) = execution.interactions
    assert interaction["kind"] == "sampling"
    assert interaction["request"]["max_tokens"] == 20
    assert (interaction["result"]["text"], interaction["result"]["input_tokens"]) == ("Hello from the model", 7)


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_sampling_that_asks_waits_for_an_approval_over_the_websocket(user, key, providers):
    await sync_to_async(_everything)()  # sampling_policy defaults to ask
    providers["openai"].push(Turn(tool_calls=[SAMPLE]), Turn(text="Approved answer"), Turn(text="Done."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    asked = (await ws_frames_until(communicator, "tool_approval_required"))[-1]
    await communicator.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "approve"})
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    assert (asked["server"], asked["tool"], asked["arguments"]["max_tokens"]) == (
        "everything",
        "sampling/createMessage",
        20,
    )
    decided = next(f for f in frames if f["type"] == "tool_approval_decided")
    assert (decided["decision"], decided["auto"]) == ("approved", False)
    assert next(f for f in frames if f["type"] == "sampling_result")["text"] == "Approved answer"
    assert "Approved answer" in next(f for f in frames if f["type"] == "tool_call_finished")["content"]
    execution = await sync_to_async(_execution)(chat)
    assert execution.interactions[0]["approval"]["decision"] == "approved"
    assert execution.interactions[0]["approval"]["by"] == user.pk


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_sampling_denied_by_policy_is_an_error_to_the_server_and_costs_nothing(user, key, providers):
    await sync_to_async(_everything)(sampling_policy="deny")
    providers["openai"].push(Turn(tool_calls=[SAMPLE]), Turn(text="Could not."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    assert "sampling_request" not in [f["type"] for f in frames]
    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert finished["is_error"] is True
    assert "Sampling is not allowed for this server." in finished["content"]
    assert len(providers["openai"].requests_to("/chat/completions")) == 2  # the two rounds, no sampling
    assert await sync_to_async(UsageRecord.objects.filter(user=user).count)() == 2


@needs_npx
@pytest.mark.django_db(transaction=True)
def test_sampling_with_no_user_is_refused_unless_the_server_allows_it(user, providers):
    server = _everything(sampling_policy="allow")
    host = get_host()

    refused = host.call_tool("everything__trigger-sampling-request", {"prompt": "Hi", "maxTokens": 5})
    server.sampling_without_user = True
    server.sampling_provider = Provider.objects.get(name="anthropic")
    server.sampling_model = MODELS["anthropic"]
    server.save()  # these settings are read per request: no reconnect needed
    providers["anthropic"].push(Turn(text="Background answer"))
    allowed = host.call_tool("everything__trigger-sampling-request", {"prompt": "Hi", "maxTokens": 5})

    assert refused.is_error is True
    assert "no user is behind this call" in refused.text
    assert allowed.is_error is False
    assert "Background answer" in allowed.text
    assert len(providers["anthropic"].requests_to("/v1/messages")) == 1
    assert UsageRecord.objects.count() == 0  # nobody to charge


# --- elicitation -----------------------------------------------------------------------------------


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_elicitation_accepted_over_the_websocket_gets_defaults_and_is_stored(user, key, providers):
    await sync_to_async(_everything)()
    providers["openai"].push(Turn(tool_calls=[ELICIT]), Turn(text="Thanks, Bob."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    asked = (await ws_frames_until(communicator, "elicitation_required"))[-1]
    second, ready = await ws_open(chat.pk, key)  # a reloaded page is asked again
    await second.disconnect()
    await communicator.send_json_to(
        {
            "type": "elicitation",
            "elicitation_id": asked["elicitation_id"],
            "action": "accept",
            "content": {"integer": 500},
        }
    )
    invalid = await communicator.receive_json_from(timeout=20)
    await communicator.send_json_to(
        {
            "type": "elicitation",
            "elicitation_id": asked["elicitation_id"],
            "action": "accept",
            "content": {"name": "Bob"},
        }
    )
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    assert (asked["server"], asked["mode"], asked["message"]) == (
        "everything",
        "form",
        "Please provide inputs for the following fields:",
    )
    assert asked["requested_schema"]["required"] == ["name"]
    assert ready["pending_elicitations"] == [asked]
    assert ready["pending_approvals"] == []
    assert (invalid["type"], invalid["code"]) == ("error", "invalid_elicitation_content")
    assert invalid["details"] == {"integer": ["At most 100."], "name": ["Required."]}
    resolved = next(f for f in frames if f["type"] == "elicitation_resolved")
    assert (resolved["action"], resolved["auto"]) == ("accept", False)
    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert "User provided the requested information" in finished["content"]
    assert '"firstLine": "It was a dark and stormy night."' in finished["content"]  # a default, filled in
    execution = await sync_to_async(_execution)(chat)
    (interaction,) = execution.interactions
    assert interaction["kind"] == "elicitation"
    assert interaction["response"]["action"] == "accept"
    assert interaction["response"]["content"] == {"name": "Bob", **FORM_DEFAULTS}
    row = await sync_to_async(ToolApproval.objects.get)(pk=asked["elicitation_id"])
    assert (row.tool, row.status, row.decided_by_id) == ("elicitation/create", "approved", user.pk)


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_elicitation_declined_over_rest(user, key, providers, api):
    await sync_to_async(_everything)()
    providers["openai"].push(Turn(tool_calls=[ELICIT]), Turn(text="Fine."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    asked = (await ws_frames_until(communicator, "elicitation_required"))[-1]
    url = f"/api/chats/{chat.pk}/elicitations/{asked['elicitation_id']}"
    bad = await sync_to_async(api.post)(url, {"action": "maybe"}, format="json")
    as_approval = await sync_to_async(api.post)(
        f"/api/chats/{chat.pk}/approvals/{asked['elicitation_id']}", {"decision": "approve"}, format="json"
    )
    answered = await sync_to_async(api.post)(url, {"action": "decline"}, format="json")
    frames = await ws_frames_until(communicator, "turn_done")
    late = await sync_to_async(api.post)(url, {"action": "accept", "content": {"name": "x"}}, format="json")
    await communicator.disconnect()

    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_elicitation_answer")
    assert as_approval.status_code == 404  # an elicitation is answered, not approved
    assert answered.status_code == 200, answered.content
    assert (answered.json()["action"], answered.json()["content"]) == ("decline", None)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "elicitation_not_pending")
    resolved = next(f for f in frames if f["type"] == "elicitation_resolved")
    assert resolved["action"] == "decline"
    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert '"action": "decline"' in finished["content"]
    execution = await sync_to_async(_execution)(chat)
    assert execution.interactions[0]["response"]["action"] == "decline"


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_an_unanswered_elicitation_times_out_as_cancel(user, key, providers, settings):
    settings.TOOL_APPROVAL_TIMEOUT_SECONDS = 1
    await sync_to_async(_everything)()
    providers["openai"].push(Turn(tool_calls=[ELICIT]), Turn(text="Nobody answered."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    resolved = next(f for f in frames if f["type"] == "elicitation_resolved")
    assert (resolved["action"], resolved["auto"]) == ("cancel", True)
    assert '"action": "cancel"' in next(f for f in frames if f["type"] == "tool_call_finished")["content"]
    row = await sync_to_async(ToolApproval.objects.get)(pk=resolved["elicitation_id"])
    assert row.status == "expired"


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_url_elicitation_shows_the_link_and_takes_the_answer(user, key, providers):
    await sync_to_async(_everything)()
    link = "https://example.com/connect"
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("everything__trigger-url-elicitation", {"url": link})]), Turn(text="Done.")
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    asked = (await ws_frames_until(communicator, "elicitation_required"))[-1]
    await communicator.send_json_to(
        {"type": "elicitation", "elicitation_id": asked["elicitation_id"], "action": "accept"}
    )
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    assert (asked["mode"], asked["url"]) == ("url", link)
    assert (
        "User completed the URL elicitation flow."
        in next(f for f in frames if f["type"] == "tool_call_finished")["content"]
    )


@needs_npx
@pytest.mark.django_db(transaction=True)
def test_with_no_user_an_elicitation_is_declined(user):
    _everything(elicitation_non_interactive="accept_defaults")

    result = get_host().call_tool("everything__trigger-elicitation-request", {})

    # accept_defaults cannot fill the required "name" (it has no default): declined all the same
    assert result.is_error is False
    assert '"action": "decline"' in result.text
    assert not ToolApproval.objects.exists()


@needs_npx
@pytest.mark.django_db(transaction=True)
async def test_a_tools_timeout_stops_while_the_user_answers(user, key, providers):
    # the call may take 1 s of the server's time; the user takes longer than that to answer
    await sync_to_async(_everything)()
    await sync_to_async(McpServer.objects.filter(name="everything").update)(timeout_seconds=1)
    await sync_to_async(get_host().reload)()
    providers["openai"].push(Turn(tool_calls=[ELICIT]), Turn(text="Done."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(MESSAGE)
    asked = (await ws_frames_until(communicator, "elicitation_required"))[-1]
    await asyncio.sleep(2.5)
    answer = {"type": "elicitation", "elicitation_id": asked["elicitation_id"], "action": "decline"}
    await communicator.send_json_to(answer)
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert finished["is_error"] is False, finished["content"]
    assert '"action": "decline"' in finished["content"]


# The test server's book_table asks for a form: name (required), guests (an integer, 1 to 12, default 2),
# budget (a number), outdoor (a boolean) and seating (an enum, default "inside").
BOOK = ToolCallSpec("test__book_table", {}, id="call_book")
BOOKING_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "title": "Name", "description": "Who the table is for."},
        "guests": {"type": "integer", "title": "Guests", "default": 2, "minimum": 1, "maximum": 12},
        "budget": {"type": "number", "title": "Budget", "default": 30.0},
        "outdoor": {"type": "boolean", "title": "Outdoor", "default": False},
        "seating": {"type": "string", "title": "Seating", "default": "inside", "enum": ["inside", "terrace", "bar"]},
    },
    "required": ["name"],
}


def _roles(chat: Chat) -> list[str]:
    return list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("protocol_mode", ["auto", "legacy"])  # 2026-07-28 asks via input_required; 2025 mid-call
def test_a_json_turn_answers_202_awaiting_input_and_goes_on_once_answered_over_rest(
    user, key, providers, api, protocol_mode
):
    # given the turn's only tool asks the user for a form, on a live worker (the turn outlives the request)
    stdio_test_server(env={"TEST_SERVER_ELICITATION": "1"}).save()
    providers["openai"].push(Turn(tool_calls=[BOOK]), Turn(text="Booked a terrace table for Ada."))
    chat = ChatFactory(owner=user)
    body = {"message": "Book a table", "provider": "openai", "model": MODELS["openai"]}

    with platform_process(MCP_PROTOCOL_MODE=protocol_mode) as base_url:

        async def scenario():
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
                # when the JSON turn stops at the question, and the user answers it (badly first)
                waiting = await client.post(f"/api/chats/{chat.pk}/messages", json=body)
                url = f"/api/chats/{chat.pk}/elicitations/{waiting.json()['elicitations'][0]['elicitation_id']}"
                invalid = await client.post(url, json={"action": "accept", "content": {"guests": 40}})
                answer = {"name": "Ada", "guests": 4, "outdoor": True, "seating": "terrace"}
                answered = await client.post(url, json={"action": "accept", "content": answer})
                again = await client.post(url, json={"action": "decline"})
                return waiting, invalid, answered, again

        waiting, invalid, answered, again = asyncio.run(scenario())
        wait_until(lambda: _roles(chat) == ["user", "assistant", "tool", "assistant"], seconds=30)

    # then the request answered 202 with the question, and the answer (defaults filled in) reached the tool
    assert waiting.status_code == 202, waiting.content
    awaiting = waiting.json()
    (asked,) = awaiting.pop("elicitations")
    assert awaiting == {"status": "awaiting_input", "chat_id": chat.pk, "approvals": []}
    elicitation_id = asked.pop("elicitation_id")
    assert asked.pop("expires_at")
    asked["requested_schema"].pop("title", None)  # the SDK sends the model's title only mid-call (2025)
    assert asked == {
        "type": "elicitation_required",
        "tool_call_id": "call_book",
        "server": "test",
        "mode": "form",
        "message": "Details for the booking",
        "requested_schema": BOOKING_SCHEMA,
        "url": None,
        "round": 1,
    }
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (400, "invalid_elicitation_content")
    assert invalid.json()["error"]["details"] == {"guests": ["At most 12."], "name": ["Required."]}
    booking = {"name": "Ada", "guests": 4, "budget": 30.0, "outdoor": True, "seating": "terrace"}
    assert answered.status_code == 200, answered.content
    assert answered.json()["id"] == elicitation_id
    assert (answered.json()["action"], answered.json()["content"]) == ("accept", booking)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "elicitation_not_pending")
    history = api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    (execution,) = history[1]["tool_executions"]
    assert (execution["tool_call_id"], execution["server"], execution["tool"]) == ("call_book", "test", "book_table")
    assert execution["is_error"] is False
    stored = json.loads(execution["result"][0]["text"])
    assert stored == {"action": "accept", "booking": booking}
    assert history[3]["content"] == [{"type": "text", "text": "Booked a terrace table for Ada."}]
    # the model was sent what the tool returned
    sent = providers["openai"].requests_to("/chat/completions")[1].json["messages"]
    assert [json.loads(m["content"]) for m in sent if m["role"] == "tool"] == [stored]
    row = ToolApproval.objects.get(pk=elicitation_id)
    assert (row.tool, row.status, row.decided_by_id) == ("elicitation/create", "approved", user.pk)
    (interaction,) = ToolExecution.objects.get(message__chat=chat).interactions
    assert (interaction["kind"], interaction["response"]["action"]) == ("elicitation", "accept")
    assert interaction["response"]["content"] == booking


@pytest.mark.parametrize("action", [{}, [], 1, None, "approve"])
def test_an_answer_whose_action_is_not_one_of_the_three_is_a_400(api, user, action):
    chat = ChatFactory(owner=user)

    response = api.post(
        f"/api/chats/{chat.pk}/elicitations/00000000-0000-0000-0000-000000000000",
        {"action": action, "content": None},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_elicitation_answer"
    assert "action" in response.json()["error"]["details"]


# --- what a server asks is never shown to the wrong person -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_server_request_during_a_read_has_nobody_behind_it(user):
    from mcp_servers.connection import _InFlight

    stdio_test_server().save()
    host = get_host()
    host.ready(20)
    seen = {}

    async def read(client):
        # what a sampling or elicitation request arriving now would be matched to
        seen["caller"] = host.connections["test"]._caller()
        return await client.list_resources()

    asyncio.run(_on_host(host, read))

    assert isinstance(seen["caller"], _InFlight)
    assert seen["caller"].interaction is None  # answered as for no user: never another user's tool call
    assert host.connections["test"]._caller() is None  # and it is gone once the read ends


async def _on_host(host, call):
    return await host.arequest("test", "resources/list", call)


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, None),
        ([], "the schema is not an object"),
        ({"properties": []}, "its properties are not an object of objects"),
        ({"properties": {"n": "integer"}}, "its properties are not an object of objects"),
        ({"properties": {"n": {"type": "integer", "minimum": "0"}}}, "n: minimum is not a number"),
        ({"properties": {"s": {"type": "string", "minLength": True}}}, "s: minLength is not a number"),
        ({"properties": {}, "required": "s"}, "required is not a list of names"),
    ],
)
def test_a_form_the_server_describes_badly_is_declined_before_anyone_sees_it(schema, problem):
    from mcp_servers.elicitation import schema_problem

    assert schema_problem(schema) == problem
