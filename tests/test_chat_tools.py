"""The tool loop: real MCP servers called by scripted models through the real provider SDKs.

The MCP host reads its configuration from another thread, so these tests commit (transaction=True).
"""

import asyncio
import shutil

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats.events import ErrorEvent, ToolCallFinished, ToolCallStarted, TurnDone
from chats.models import Message, ToolExecution
from chats.services.turns import TurnRequest, turn_prepare, turn_start
from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from providers.models import Provider, ProviderModel
from providers.types import GenerationOptions

from .conftest import stdio_test_server
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import Fail, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)
NPX = shutil.which("npx")


@pytest.fixture
def test_server():
    server = stdio_test_server(timeout_seconds=10)
    server.save()
    get_host().ready(20)
    return server


def _turn(api, chat, message="Go", provider="openai", **body):
    return api.post(
        f"/api/chats/{chat.pk}/messages",
        {"message": message, "provider": provider, "model": MODELS[provider], **body},
        format="json",
    )


def _history(chat):
    return [(m.role, m.content) for m in Message.objects.filter(chat=chat).order_by("position")]


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
def test_two_round_chain_writes_a_file_then_reads_it_back(api, user, providers, tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    McpServer.objects.create(
        name="files",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        args=["-y", "@modelcontextprotocol/server-filesystem@2026.8.31", str(sandbox)],
        tool_policies={"write_file": "allow"},  # the server marks it destructive, which would ask
    )
    get_host().ready(120)
    target = str(sandbox / "test.txt")
    providers["openai"].push(
        Turn(
            text="I'll create it.",
            tool_calls=[ToolCallSpec("files__write_file", {"path": target, "content": "42 apples"})],
        ),
        Turn(tool_calls=[ToolCallSpec("files__read_text_file", {"path": target})]),
        Turn(text='The file says: "42 apples".'),
    )
    chat = ChatFactory(owner=user)

    response = _turn(api, chat, "Create a test file and read it back")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == 'The file says: "42 apples".'
    assert (sandbox / "test.txt").read_text() == "42 apples"
    assert [(e["round"], e["name"], e["server"], e["is_error"]) for e in body["tool_executions"]] == [
        (1, "files__write_file", "files", False),
        (2, "files__read_text_file", "files", False),
    ]
    assert body["tool_executions"][1]["content"] == "42 apples"
    # the file's content went back to the model in the third request
    third = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert third[-1] == {"role": "tool", "tool_call_id": body["tool_executions"][1]["id"], "content": "42 apples"}
    roles = [role for role, _ in _history(chat)]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    executions = list(ToolExecution.objects.order_by("id").values_list("round", "server", "tool", "is_error"))
    assert executions == [(1, "files", "write_file", False), (2, "files", "read_text_file", False)]


def test_calls_of_one_round_run_concurrently(api, user, providers, test_server):
    # rendezvous answers "met" only when both calls are in flight on the server at the same time
    calls = [ToolCallSpec("test__rendezvous", {"group": "round1", "n": 2, "wait": 5}) for _ in range(2)]
    providers["anthropic"].push(Turn(tool_calls=calls), Turn(text="Both met."))
    chat = ChatFactory(owner=user)

    body = _turn(api, chat, provider="anthropic").json()

    assert [e["content"] for e in body["tool_executions"]] == ["met", "met"]
    assert body["response"] == "Both met."


def test_failing_and_unknown_tools_are_fed_back_and_the_model_recovers(api, user, providers, test_server):
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__fail", {"message": "disk full"}), ToolCallSpec("nope__tool", {})]),
        Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "recovered"})]),
        Turn(text="Done despite the errors."),
    )
    chat = ChatFactory(owner=user)

    body = _turn(api, chat).json()

    assert body["success"] is True
    assert body["response"] == "Done despite the errors."
    first, unknown, echo = body["tool_executions"]
    assert (first["is_error"], unknown["is_error"], echo["is_error"]) == (True, True, False)
    assert "disk full" in first["content"]
    assert unknown["content"] == "Tool 'nope__tool' is not available. Use one of the tools offered."
    second_request = providers["openai"].requests_to("/chat/completions")[1].json["messages"]
    tool_messages = [m for m in second_request if m["role"] == "tool"]
    assert [m["content"].startswith("Error: ") for m in tool_messages] == [True, True]
    stored = ToolExecution.objects.order_by("id")
    assert [(t.tool, t.is_error) for t in stored] == [("fail", True), ("nope__tool", True), ("echo", False)]


def test_invalid_and_oversized_arguments_become_error_results(api, user, providers, test_server, settings):
    settings.CHAT_MAX_TOOL_ARGUMENT_BYTES = 100
    providers["ollama"].push(
        Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "x" * 500})]),
        Turn(text="ok"),
    )
    chat = ChatFactory(owner=user)

    body = _turn(api, chat, provider="ollama").json()

    assert body["tool_executions"][0]["is_error"] is True
    assert "too large" in body["tool_executions"][0]["content"]
    assert get_host().statuses()[0].calls == 0  # never sent to the server


def test_round_limit_ends_the_turn_clearly(api, user, providers, test_server, settings):
    settings.CHAT_MAX_TOOL_ROUNDS = 2
    echo = [ToolCallSpec("test__echo", {"text": "again"})]
    providers["openai"].push(Turn(tool_calls=echo), Turn(tool_calls=echo), Turn(tool_calls=echo))
    chat = ChatFactory(owner=user)

    body = _turn(api, chat).json()

    assert body["success"] is False
    assert body["finish_reason"] == "round_limit"
    assert body["error"]["code"] == "tool_round_limit"
    assert len(providers["openai"].requests_to("/chat/completions")) == 2
    roles = [role for role, _ in _history(chat)]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert "2 rounds" in _history(chat)[-1][1][0]["text"]


def test_provider_failure_mid_turn_keeps_everything_before_it(api, user, providers, test_server):
    providers["openai"].push(
        Turn(text="Checking.", tool_calls=[ToolCallSpec("test__echo", {"text": "one"})]),
        Fail(500, "upstream exploded"),
        Fail(500, "upstream exploded"),
    )
    chat = ChatFactory(owner=user)

    response = _turn(api, chat)

    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "provider_unavailable"
    assert body["tool_executions"][0]["content"] == "one"
    # the failed round is stored too, as a reply with no content: failed, with its reason
    assert [role for role, _ in _history(chat)] == ["user", "assistant", "tool", "assistant"]
    assert _history(chat)[-1][1] == []


def test_hot_swap_replays_tool_history_on_another_provider(api, user, providers, test_server):
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__add", {"a": 2, "b": 3})]), Turn(text="It is 5."))
    providers["anthropic"].push(Turn(text="Yes, 2 + 3 = 5."))
    chat = ChatFactory(owner=user)

    first = _turn(api, chat, "Add 2 and 3", provider="openai").json()
    second = _turn(api, chat, "Are you sure?", provider="anthropic")

    assert second.status_code == 200, second.content
    assert second.json()["response"] == "Yes, 2 + 3 = 5."
    wire = providers["anthropic"].requests_to("/v1/messages")[-1].json
    assert providers["anthropic"].validate(wire) == []
    call_id = first["tool_executions"][0]["id"]
    assert wire["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": call_id,
        "name": "test__add",
        "input": {"a": 2, "b": 3},
    }
    assert wire["messages"][2]["content"][0]["tool_use_id"] == call_id
    messages = api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    assert [(m["role"], m["provider"]) for m in messages] == [
        ("user", ""),
        ("assistant", "openai"),
        ("tool", ""),
        ("assistant", "openai"),
        ("user", ""),
        ("assistant", "anthropic"),
    ]
    assert messages[1]["content"][0]["type"] == "tool_call"
    assert messages[1]["tool_executions"][0]["tool"] == "add"
    assert messages[2]["content"][0]["type"] == "tool_result"


def test_tools_false_and_server_selection(api, user, providers, test_server):
    stdio_test_server(name="other").save()
    get_host().reload()
    get_host().ready(20)
    chat = ChatFactory(owner=user)

    providers["openai"].push(Turn(text="a"), Turn(text="b"))
    _turn(api, chat, tools=False)
    _turn(api, chat, mcp_servers=["other"])

    first, second = providers["openai"].requests_to("/chat/completions")
    assert "tools" not in first.json
    assert {t["function"]["name"].split("__")[0] for t in second.json["tools"]} == {"other"}


def test_query_count_does_not_grow_with_tool_count(api, user, providers, test_server):
    # an admin-listed model: no model-list lookup on the provider inside the measured turns
    ProviderModel.objects.create(provider=Provider.objects.get(name="openai"), model_id=MODELS["openai"])

    def count(n: int) -> int:
        calls = [ToolCallSpec("test__echo", {"text": str(i)}) for i in range(n)]
        providers["openai"].push(Turn(tool_calls=calls), Turn(text="done"))
        chat = ChatFactory(owner=user)
        with CaptureQueriesContext(connection) as queries:
            assert _turn(api, chat).json()["success"] is True
        return len(queries.captured_queries)

    api.get("/api/me")
    assert count(1) == count(3)


# --- the engine directly: cancel, and a consumer that goes away -------------------------------


async def _prepare(user, chat, message="Go"):
    return await turn_prepare(
        user=user,
        chat_id=chat.pk,
        request=TurnRequest(message=message, provider="openai", model=MODELS["openai"], options=GenerationOptions()),
    )


async def test_cancel_stops_the_turn_and_keeps_a_valid_history(user, providers, test_server):
    chat = await ChatFactory._meta.model.objects.acreate(owner=user, title="t")
    providers["openai"].push(Turn(text="Working on it.", tool_calls=[ToolCallSpec("test__slow", {"seconds": 8})]))
    handle = await turn_start(await _prepare(user, chat))

    events = []
    async for event in handle.events():
        events.append(event)
        if isinstance(event, ToolCallStarted):
            handle.cancel()

    done = events[-1]
    assert isinstance(done, TurnDone)
    assert done.finish_reason == "cancelled"
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished[0].is_error is True
    assert "Cancelled" in finished[0].content
    rows = [m async for m in Message.objects.filter(chat=chat).order_by("position")]
    assert [m.role for m in rows] == ["user", "assistant", "tool"]
    assert rows[2].content[0]["tool_call_id"] == rows[1].content[1]["id"]


async def test_a_turn_nobody_listens_to_still_finishes_and_is_stored(user, providers, test_server):
    chat = await ChatFactory._meta.model.objects.acreate(owner=user, title="t")
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__slow", {"seconds": 0.3})]), Turn(text="Finished."))

    handle = await turn_start(await _prepare(user, chat))
    del handle  # the client went away: no consumer, no reference held by the caller
    for _ in range(100):
        await asyncio.sleep(0.05)
        rows = [m async for m in Message.objects.filter(chat=chat).order_by("position")]
        if rows and rows[-1].finish_reason == "end":
            break
    assert [m.role for m in rows] == ["user", "assistant", "tool", "assistant"]
    assert rows[-1].content == [{"type": "text", "text": "Finished."}]


async def test_partial_text_is_kept_when_cancelled_while_streaming(user, providers, test_server):
    chat = await ChatFactory._meta.model.objects.acreate(owner=user, title="t")
    providers["ollama"].stream_delay = 0.05
    providers["ollama"].push(Turn(text="A long answer " * 40, chunk_size=7))
    try:
        prepared = await turn_prepare(
            user=user,
            chat_id=chat.pk,
            request=TurnRequest(message="Go", provider="ollama", model=MODELS["ollama"], tools=False),
        )
        handle = await turn_start(prepared)
        events = []
        async for event in handle.events():
            events.append(event)
            if event.type == "text_delta" and len(events) == 4:
                handle.cancel()
    finally:
        providers["ollama"].stream_delay = 0.0

    assert events[-1].finish_reason == "cancelled"
    assert not any(isinstance(e, ErrorEvent) for e in events)
    rows = [m async for m in Message.objects.filter(chat=chat).order_by("position")]
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[-1].finish_reason == "cancelled"
    partial = rows[-1].content[0]["text"]
    assert "A long answer ".startswith(partial[:14])
    assert 0 < len(partial) < len("A long answer " * 40)
