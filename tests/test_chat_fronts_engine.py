"""The engine as the /v1 fronts use it: a conversation brought by the request, tools the client runs itself,
and chats that are not kept. Real provider SDKs against the wire servers, the real MCP test server."""

import pytest
from asgiref.sync import sync_to_async

from chats.events import ClientToolCalls, ToolCallFinished, TurnDone
from chats.models import Chat, Message, ToolExecution
from chats.services.turns import TurnRequest, turn_prepare, turn_start
from mcp_servers.host import get_host
from providers.types import Message as Canonical
from providers.types import TextBlock, ToolCallBlock, ToolResultBlock, ToolSpec
from usage.models import UsageRecord

from .conftest import stdio_test_server
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city (the client runs it).",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
def test_server():
    server = stdio_test_server(timeout_seconds=10)
    server.save()
    get_host().ready(20)
    return server


async def _run(user, *, chat_id=None, **fields):
    request = TurnRequest(message="title", provider="openai", model=MODELS["openai"], **fields)
    prepared = await turn_prepare(user=user, chat_id=chat_id, request=request)
    return await (await turn_start(prepared)).result()


@sync_to_async
def _stored(chat_id):
    return [(m.role, m.content) for m in Message.objects.filter(chat_id=chat_id).order_by("position")]


async def test_a_round_mixing_server_and_client_tools_runs_the_servers_and_hands_the_clients_back(
    user, providers, test_server
):
    providers["openai"].push(
        Turn(
            tool_calls=[
                ToolCallSpec("test__echo", {"text": "from the server"}),
                ToolCallSpec("get_weather", {"city": "Oslo"}),
            ]
        ),
        Turn(text="Oslo is sunny, and the server said: from the server."),
    )
    conversation = [
        Canonical(role="user", content=[TextBlock(text="Weather in Oslo? And echo something.")]),
    ]

    events = await _run(user, conversation=conversation, client_tools=[WEATHER], mcp_servers=["test"])

    done = events[-1]
    assert isinstance(done, TurnDone)
    assert (done.success, done.finish_reason) == (True, "tool_calls")
    (handed,) = [event for event in events if isinstance(event, ClientToolCalls)]
    assert [(call["name"], call["arguments"]) for call in handed.calls] == [("get_weather", {"city": "Oslo"})]
    assert [(e.name, e.is_error) for e in events if isinstance(e, ToolCallFinished)] == [("test__echo", False)]
    offered = providers["openai"].requests_to("chat/completions")[0].json["tools"]
    assert {tool["function"]["name"] for tool in offered} >= {"test__echo", "get_weather"}
    stored = await _stored(done.chat_id)
    assert [role for role, _ in stored] == ["user", "assistant", "tool"]
    assert [block["name"] for block in stored[2][1]] == ["test__echo"]  # the client's result is not here yet
    assert await sync_to_async(ToolExecution.objects.count)() == 1

    # the client comes back with its result: the model sees one tool message holding both results
    weather_id = handed.calls[0]["id"]
    result = Canonical(
        role="tool", content=[ToolResultBlock(tool_call_id=weather_id, name="get_weather", content="sunny, 21 C")]
    )

    events = await _run(user, chat_id=done.chat_id, conversation=[result], client_tools=[WEATHER], mcp_servers=["test"])

    assert (events[-1].success, events[-1].finish_reason) == (True, "end")
    sent = providers["openai"].requests_to("chat/completions")[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert {m["tool_call_id"] for m in sent[2:]} == {weather_id, sent[1]["tool_calls"][0]["id"]}
    assert [role for role, _ in await _stored(done.chat_id)] == ["user", "assistant", "tool", "tool", "assistant"]


async def test_a_brought_conversation_is_stored_whole_and_replayed_in_order(user, providers):
    providers["openai"].push(Turn(text="You asked about 2 + 2 before: it is 4."))
    conversation = [
        Canonical(role="user", content=[TextBlock(text="What is 2 + 2?")]),
        Canonical(role="assistant", content=[ToolCallBlock(id="call_1", name="calc", arguments={"e": "2+2"})]),
        Canonical(role="tool", content=[ToolResultBlock(tool_call_id="call_1", name="calc", content="4")]),
        Canonical(role="assistant", content=[TextBlock(text="4.")]),
        Canonical(role="user", content=[TextBlock(text="And what did I ask?")]),
    ]

    events = await _run(user, conversation=conversation, system="Answer briefly.", tools=False)

    done = events[-1]
    assert done.success
    sent = providers["openai"].requests_to("chat/completions")[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[0]["content"] == "Answer briefly."
    stored = await _stored(done.chat_id)
    assert [role for role, _ in stored] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert (await sync_to_async(Chat.objects.get)(pk=done.chat_id)).title == "title"


async def test_a_chat_not_stored_is_gone_after_its_turn_and_its_usage_row_stays(user, providers):
    providers["openai"].push(Turn(text="Not kept.", input_tokens=10, output_tokens=3))

    events = await _run(user, conversation=[Canonical.user("Hi")], store=False)

    done = events[-1]
    assert done.success
    assert not await sync_to_async(Chat.objects.filter(pk=done.chat_id).exists)()
    assert await sync_to_async(Message.objects.count)() == 0
    record = await sync_to_async(UsageRecord.objects.get)()
    assert (record.chat_id, record.input_tokens, record.output_tokens) == (None, 10, 3)


async def test_a_conversation_ending_with_the_models_own_message_is_refused(user, providers):
    from platform_site.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        await turn_prepare(
            user=user,
            chat_id=None,
            request=TurnRequest(
                message="t",
                provider="openai",
                model=MODELS["openai"],
                conversation=[Canonical.user("Hi"), Canonical(role="assistant", content=[TextBlock(text="Hello")])],
            ),
        )
    assert refused.value.code == "invalid_conversation"


async def test_a_forced_tool_call_is_forced_in_the_first_round_only(user, providers, test_server):
    from providers.types import GenerationOptions, ToolChoice

    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "x"})]), Turn(text="Done."))

    events = await _run(
        user,
        conversation=[Canonical.user("Echo x")],
        mcp_servers=["test"],
        options=GenerationOptions(tool_choice=ToolChoice(mode="required")),
    )

    assert (events[-1].success, events[-1].finish_reason) == (True, "end")
    first, second = providers["openai"].requests_to("chat/completions")
    assert first.json["tool_choice"] == "required"
    assert "tool_choice" not in second.json


async def test_a_new_chats_turn_streams_its_first_round_as_it_comes(user, providers):
    from chats.events import TextDelta, TurnStarted

    # a reply of ten pieces, each a while after the last
    providers["openai"].stream_delay = 0.2
    providers["openai"].push(Turn(text="0123456789", chunk_size=1))
    prepared = await turn_prepare(
        user=user, chat_id=None, request=TurnRequest(message="Hi", provider="openai", model=MODELS["openai"])
    )
    handle = await turn_start(prepared)
    queue = handle.subscribe()

    first = await queue.get()

    # the turn starts once its chat is stored, not once the model is done: most of the reply is still to come
    assert isinstance(first, TurnStarted)
    assert sum(isinstance(event, TextDelta) for event in handle.sent) < 5
    events = [event async for event in handle.events() if event is not None]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "0123456789"
    assert events[-1].success


def test_a_history_with_calls_left_unanswered_or_answered_twice_is_made_whole_for_the_model():
    from chats.services.turns.history import NO_RESULT, tool_results_paired

    def call(id_):
        return ToolCallBlock(id=id_, name="f", arguments={})

    def result(id_, text="ok"):
        return Canonical(role="tool", content=[ToolResultBlock(tool_call_id=id_, name="f", content=text)])

    history = [
        Canonical.user("go"),
        Canonical(role="assistant", content=[call("a"), call("b")]),
        result("a"),  # the server's call, answered here
        result("a", "again"),  # a client's retry sent it twice
        Canonical.user("never mind b"),  # b left unanswered
        result("x"),  # an answer to nothing
        Canonical(role="assistant", content=[call("c")]),
        result("c"),
    ]

    paired = tool_results_paired(history)

    assert [m.role for m in paired] == ["user", "assistant", "tool", "user", "assistant", "tool"]
    first = paired[2].content
    assert [(b.tool_call_id, b.content, b.is_error) for b in first] == [("a", "ok", False), ("b", NO_RESULT, True)]
    assert [b.tool_call_id for b in paired[5].content] == ["c"]
    assert tool_results_paired(paired) == paired  # a whole history is left as it is
