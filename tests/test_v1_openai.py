"""The OpenAI-compatible API (/v1): the official openai SDK, sync and async, over real sockets against a live
platform process, answered by the providers' wire-level fakes and real MCP server processes."""

import asyncio
import json
import shutil

import anthropic
import httpx
import openai
import pytest

from accounts.services import api_key_create
from chats.models import Chat, ModelAlias
from chats.models import Message as MessageRow
from mcp_servers.models import McpServer
from providers.models import Provider
from usage.models import UsageRecord

from .conftest import platform_process, stdio_test_server, wait_until
from .factories import UserFactory
from .fakes.providers import KINDS, MODELS
from .fakes.wire import Fail, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)
NPX = shutil.which("npx")
MODEL = f"openai/{MODELS['openai']}"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def issued(user):
    return api_key_create(owner=user, name="v1")


@pytest.fixture
def key(issued):
    return issued.secret


@pytest.fixture
def live(providers):
    with platform_process() as url:
        yield url


def _sync(live, key, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live}/v1", api_key=key, max_retries=0, **kwargs)


def _async(live, key) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live}/v1", api_key=key, max_retries=0)


def _wire_messages(providers, kind: str = "openai", index: int = -1) -> list[dict]:
    return providers[kind].requests_to("/chat/completions")[index].json["messages"]


def _roles(chat_id: int) -> list[str]:
    return list(MessageRow.objects.filter(chat_id=chat_id).order_by("position").values_list("role", flat=True))


# --- /v1/models -------------------------------------------------------------------------------------------


def test_models_list_and_retrieve_in_both_sdks_shapes(live, key):
    ModelAlias.objects.create(
        name="research-assistant",
        description="Research with tools",
        provider=Provider.objects.get(name="openai"),
        model=MODELS["openai"],
    )
    client = _sync(live, key)

    listed = client.models.list()
    one = client.models.retrieve(MODEL)
    alias = client.models.retrieve("research-assistant")
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("openai/no-such-model")
    claude = anthropic.Anthropic(base_url=live, api_key=key, max_retries=0)
    anthropic_listed = claude.models.list()
    anthropic_alias = claude.models.retrieve("research-assistant")
    with pytest.raises(anthropic.NotFoundError) as anthropic_missing:
        claude.models.retrieve("openai/no-such-model")

    ids = [model.id for model in listed.data]
    expected = {MODEL, "openai/gpt-4o", "anthropic/claude-sonnet-4-6", "ollama/llama3.2:latest", "research-assistant"}
    assert expected <= set(ids)
    assert {model.object for model in listed.data} == {"model"}
    assert (one.id, one.owned_by) == (MODEL, "openai")
    assert (alias.id, alias.owned_by) == ("research-assistant", "platform")
    assert alias.model_extra["platform"] == {"alias_of": MODEL, "description": "Research with tools"}
    assert missing.value.status_code == 404
    assert missing.value.body["code"] == "model_not_found"
    assert [model.id for model in anthropic_listed.data] == ids
    assert (anthropic_alias.type, anthropic_alias.display_name) == ("model", "Research with tools")
    assert anthropic_missing.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": (
                "The model 'openai/no-such-model' does not exist: use an alias or provider/model from /v1/models."
            ),
        },
    }


# --- completions ------------------------------------------------------------------------------------------


def test_plain_completion_stores_the_chat_and_records_usage_against_the_key(live, key, issued, providers):
    providers["openai"].push(Turn(text="Hello there.", input_tokens=12, output_tokens=3))
    client = _sync(live, key)

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "user", "content": "Hi"},
        ],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=50,
        stop="END",
        seed=7,
    )
    completion = raw.parse()

    assert completion.id.startswith("chatcmpl-")
    assert (completion.object, completion.model) == ("chat.completion", MODEL)
    assert completion.choices[0].message.content == "Hello there."
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12,
        3,
        15,
    )
    platform = completion.model_extra["platform"]
    chat_id = platform["chat_id"]
    assert raw.headers["x-chat-id"] == str(chat_id)
    assert (platform["status"], platform["tool_executions"]) == ("completed", [])
    assert _roles(chat_id) == ["user", "assistant"]
    sent = providers["openai"].requests_to("/chat/completions")[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief.\n\nNo emoji."},
        {"role": "user", "content": "Hi"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (0.2, 0.9, ["END"], 7)
    assert 50 in (sent.get("max_completion_tokens"), sent.get("max_tokens"))
    record = UsageRecord.objects.get()
    assert (record.api_key_id, record.chat_id, record.input_tokens, record.output_tokens) == (
        issued.api_key.pk,
        chat_id,
        12,
        3,
    )
    assert record.cost > 0
    assert platform["cost"] == f"{record.cost:.8f}"


def test_stream_with_usage_async(live, key, providers):
    providers["openai"].push(Turn(text="Streaming works fine.", input_tokens=9, output_tokens=4, chunk_size=3))

    async def scenario():
        async with _async(live, key) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Stream please"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(scenario())

    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_choices) == "Streaming works fine."
    assert len([chunk for chunk in with_choices if chunk.choices[0].delta.content]) > 1
    assert [chunk.choices[0].finish_reason for chunk in with_choices][-1] == "stop"
    assert with_choices[-1].model_extra["platform"]["status"] == "completed"
    usage = chunks[-1]
    assert usage.choices == []
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (9, 4, 13)


def test_client_tool_round_trip_sent_whole_each_time(live, key, providers):
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"}, id="call_w1")]),
        Turn(text="It is sunny in Paris."),
    )
    client = _sync(live, key)
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]

    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True, exclude={"refusal"}),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24C"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])

    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.content is None
    assert (call.id, call.type, call.function.name) == ("call_w1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert [
        tool["function"]["name"] for tool in providers["openai"].requests_to("/chat/completions")[0].json["tools"]
    ] == ["get_weather"]
    assert providers["openai"].requests_to("/chat/completions")[0].json["tool_choice"] == "auto"
    assert second.choices[0].message.content == "It is sunny in Paris."
    assert second.choices[0].finish_reason == "stop"
    assert _wire_messages(providers)[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 24C"},
    ]


def test_client_tool_calls_streamed_then_the_chat_continued_with_the_result(live, key, providers):
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Oslo"}, id="call_o1")]),
        Turn(text="Snow in Oslo."),
    )

    async def scenario():
        async with _async(live, key) as client:
            response = await client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Oslo?"}],
                tools=[WEATHER],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                stream=True,
            )
            chunks = [chunk async for chunk in response.parse()]
            chat_id = response.headers["x-chat-id"]
            answer = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "tool", "tool_call_id": "call_o1", "content": "snow"}],
                tools=[WEATHER],
                extra_headers={"X-Chat-Id": chat_id},
            )
            return chunks, int(chat_id), answer

    chunks, chat_id, answer = asyncio.run(scenario())

    deltas = [tc for chunk in chunks if chunk.choices for tc in chunk.choices[0].delta.tool_calls or []]
    assert [(d.index, d.id, d.function.name, json.loads(d.function.arguments)) for d in deltas] == [
        (0, "call_o1", "get_weather", {"city": "Oslo"})
    ]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"
    assert providers["openai"].requests_to("/chat/completions")[0].json["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    assert answer.choices[0].message.content == "Snow in Oslo."
    assert answer.model_extra["platform"]["chat_id"] == chat_id
    # the stored history went to the model first: the user's question, its call, then the client's result
    assert [m["role"] for m in _wire_messages(providers)] == ["user", "assistant", "tool"]
    assert _roles(chat_id) == ["user", "assistant", "tool", "assistant"]


def test_an_alias_with_thinking_answers_its_reasoning_beside_the_content(live, key, providers):
    ModelAlias.objects.create(
        name="thinker",
        provider=Provider.objects.get(name="anthropic"),
        model=MODELS["anthropic"],
        options={"thinking_budget": 1024, "max_tokens": 4096},
    )
    providers["anthropic"].push(Turn(thinking="Six times seven.", text="42."))

    completion = _sync(live, key).chat.completions.create(
        model="thinker", messages=[{"role": "user", "content": "6*7?"}]
    )

    assert completion.choices[0].message.content == "42."
    assert completion.choices[0].message.model_extra["reasoning_content"] == "Six times seven."
    sent = providers["anthropic"].requests_to("/v1/messages")[-1].json
    assert (sent["thinking"]["budget_tokens"], sent["max_tokens"]) == (1024, 4096)


# --- server-side MCP tools ----------------------------------------------------------------------------------


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
def test_an_alias_runs_the_filesystem_write_then_read_chain_server_side(providers, key, tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    files = McpServer.objects.create(
        name="files",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        args=["-y", "@modelcontextprotocol/server-filesystem@2026.8.31", str(sandbox)],
        tool_policies={"write_file": "allow"},  # the server marks it destructive, which would ask
    )
    alias = ModelAlias.objects.create(
        name="file-clerk", provider=Provider.objects.get(name="openai"), model=MODELS["openai"]
    )
    alias.mcp_servers.add(files)
    target = str(sandbox / "test.txt")
    providers["openai"].push(
        Turn(text="I'll write it.", tool_calls=[ToolCallSpec("files__write_file", {"path": target, "content": "42"})]),
        Turn(tool_calls=[ToolCallSpec("files__read_text_file", {"path": target})]),
        Turn(text="The file says 42."),
    )

    with platform_process() as live:
        completion = _sync(live, key, timeout=120).chat.completions.create(
            model="file-clerk", messages=[{"role": "user", "content": "Write 42 to a file and read it back"}]
        )

    assert completion.model == "file-clerk"
    assert completion.choices[0].message.content == "The file says 42."
    assert completion.choices[0].message.tool_calls is None
    assert (sandbox / "test.txt").read_text() == "42"
    executions = completion.model_extra["platform"]["tool_executions"]
    assert [(e["round"], e["server"], e["tool"], e["is_error"]) for e in executions] == [
        (1, "files", "write_file", False),
        (2, "files", "read_text_file", False),
    ]
    assert executions[1]["content"] == "42"
    offered = {
        tool["function"]["name"] for tool in providers["openai"].requests_to("/chat/completions")[0].json["tools"]
    }
    assert {"files__write_file", "files__read_text_file"} <= offered


def test_mcp_servers_asked_in_the_request_stream_as_platform_chunks(providers, key):
    stdio_test_server().save()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "pong"})]),
        Turn(text="It said pong."),
    )

    async def scenario():
        async with _async(live, key) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Echo pong"}],
                stream=True,
                extra_body={"mcp_servers": ["test"]},
            )
            return [chunk async for chunk in stream]

    with platform_process() as live:
        chunks = asyncio.run(scenario())

    platform = [chunk.model_extra["platform"] for chunk in chunks if not chunk.choices and chunk.model_extra]
    assert [(p["type"], p["name"]) for p in platform] == [
        ("tool_call_started", "test__echo"),
        ("tool_call_finished", "test__echo"),
    ]
    assert platform[1]["content"] == "pong"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "It said pong."
    final = [chunk for chunk in chunks if chunk.choices][-1]
    assert final.choices[0].finish_reason == "stop"
    assert [e["content"] for e in final.model_extra["platform"]["tool_executions"]] == ["pong"]


def test_a_call_that_needs_approval_ends_the_response_and_the_turn_goes_on_once_decided(providers, key):
    stdio_test_server().save()  # wipe is destructive: it asks
    providers["openai"].push(
        Turn(text="Wiping.", tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]),
        Turn(text="Wiped it."),
    )

    with platform_process() as live:
        waiting = _sync(live, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Wipe"}], extra_body={"mcp_servers": ["test"]}
        )
        platform = waiting.model_extra["platform"]
        # while it waits the chat is busy: another turn in it is a 409
        with pytest.raises(openai.ConflictError) as busy:
            _sync(live, key).chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Again"}],
                metadata={"chat_id": str(platform["chat_id"])},
            )
        decided = httpx.post(
            f"{live}/api/chats/{platform['chat_id']}/approvals/{platform['approvals'][0]['approval_id']}",
            json={"decision": "approve"},
            headers={"Authorization": f"Bearer {key}"},
        )
        wait_until(lambda: _roles(platform["chat_id"]) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert waiting.choices[0].finish_reason == "stop"
    assert waiting.choices[0].message.content == "Wiping."
    assert platform["status"] == "awaiting_approval"
    assert [(a["server"], a["tool"], a["arguments"]) for a in platform["approvals"]] == [
        ("test", "wipe", {"note": "n"})
    ]
    assert busy.value.status_code == 409
    assert busy.value.body["code"] == "turn_in_progress"
    assert decided.status_code == 200
    final = MessageRow.objects.filter(chat_id=platform["chat_id"]).order_by("position").last()
    assert final.content == [{"type": "text", "text": "Wiped it."}]


def test_a_streamed_call_that_needs_approval_ends_the_stream_awaiting_it(providers, key):
    stdio_test_server().save()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "a"}), ToolCallSpec("test__wipe", {"note": "b"})]),
        Turn(text="Both wiped."),
    )

    async def scenario():
        async with _async(live, key) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Wipe both"}],
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"mcp_servers": ["test"]},
            )
            return [chunk async for chunk in stream]

    with platform_process() as live:
        chunks = asyncio.run(scenario())
        final = [chunk for chunk in chunks if chunk.choices][-1]
        platform = final.model_extra["platform"]
        for approval in platform["approvals"]:
            httpx.post(
                f"{live}/api/chats/{platform['chat_id']}/approvals/{approval['approval_id']}",
                json={"decision": "deny"},
                headers={"Authorization": f"Bearer {key}"},
            ).raise_for_status()
        wait_until(lambda: _roles(platform["chat_id"]) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert final.choices[0].finish_reason == "stop"
    assert platform["status"] == "awaiting_approval"
    assert sorted(a["arguments"]["note"] for a in platform["approvals"]) == ["a", "b"]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 5)
    assert _wire_messages(providers)[-2:] == [
        {"role": "tool", "tool_call_id": m["tool_call_id"], "content": "Error: The user denied this tool call."}
        for m in _wire_messages(providers)[-2:]
    ]


# --- storage ----------------------------------------------------------------------------------------------


def test_store_false_leaves_no_chat_but_a_usage_row(live, key, issued, providers):
    providers["openai"].push(Turn(text="Forgotten.", input_tokens=7, output_tokens=2))

    raw = _sync(live, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Do not keep this"}], store=False
    )

    assert raw.parse().choices[0].message.content == "Forgotten."
    assert raw.parse().model_extra["platform"]["chat_id"] is None
    assert "x-chat-id" not in raw.headers
    assert not Chat.objects.exists()
    assert not MessageRow.objects.exists()
    record = UsageRecord.objects.get()
    assert (record.api_key_id, record.chat_id, record.input_tokens, record.output_tokens) == (
        issued.api_key.pk,
        None,
        7,
        2,
    )


def test_continuing_a_chat_replays_its_history_and_another_users_chat_is_404(live, key, providers):
    providers["openai"].push(Turn(text="Nice to meet you, Ann."), Turn(text="You are Ann."))
    other_key = api_key_create(owner=UserFactory(username="mallory"), name="other").secret
    client = _sync(live, key)

    first = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "I am Ann."}])
    chat_id = first.model_extra["platform"]["chat_id"]
    second = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Who am I?"}], metadata={"chat_id": str(chat_id)}
    )
    with pytest.raises(openai.NotFoundError) as foreign:
        _sync(live, other_key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], metadata={"chat_id": str(chat_id)}
        )

    assert second.choices[0].message.content == "You are Ann."
    assert second.model_extra["platform"]["chat_id"] == chat_id
    assert _wire_messages(providers) == [
        {"role": "user", "content": "I am Ann."},
        {"role": "assistant", "content": "Nice to meet you, Ann."},
        {"role": "user", "content": "Who am I?"},
    ]
    assert foreign.value.body["type"] == "not_found_error"
    assert _roles(chat_id) == ["user", "assistant", "user", "assistant"]
    assert Chat.objects.count() == 1


# --- errors -----------------------------------------------------------------------------------------------


def test_errors_map_to_the_sdks_exception_classes(live, key, providers):
    client = _sync(live, key)
    hi = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        _sync(live, "sk-not-a-key").chat.completions.create(model=MODEL, messages=hi)
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="nobody/nothing", messages=hi)
    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model=MODEL, messages=hi, n=2)
    with pytest.raises(openai.BadRequestError) as logprobs:
        client.chat.completions.create(model=MODEL, messages=hi, logprobs=True)
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError) as bad_role:
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as bad_part:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
        )
    with pytest.raises(openai.BadRequestError) as bad_temperature:
        client.chat.completions.create(model=MODEL, messages=hi, temperature="hot")
    providers["openai"].push(*[Fail(500, "upstream broke")] * 6)
    with pytest.raises(openai.InternalServerError) as upstream:
        client.chat.completions.create(model=MODEL, messages=hi)
    bad_json = httpx.post(f"{live}/v1/chat/completions", content=b"{nope", headers={"Authorization": f"Bearer {key}"})
    nowhere = httpx.get(f"{live}/v1/nothing/here", headers={"Authorization": f"Bearer {key}"})

    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.body["type"] == "authentication_error"
    assert (unknown_model.value.body["code"], unknown_model.value.body["param"]) == ("model_not_found", "model")
    assert (several.value.body["code"], several.value.body["param"]) == ("unsupported_parameter", "n")
    assert (logprobs.value.body["code"], logprobs.value.body["param"]) == ("unsupported_parameter", "logprobs")
    assert (empty.value.body["code"], empty.value.body["param"]) == ("empty_messages", "messages")
    assert bad_role.value.body["param"] == "messages[0].role"
    assert (bad_part.value.body["code"], bad_part.value.body["param"]) == (
        "unsupported_content",
        "messages[0].content[0].type",
    )
    assert (bad_temperature.value.body["code"], bad_temperature.value.body["param"]) == (
        "invalid_type",
        "temperature",
    )
    assert upstream.value.status_code == 503
    assert upstream.value.body["code"] == "provider_unavailable"
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == {
        "message": "The body is not valid JSON.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_json",
    }
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["type"] == "not_found_error"


def test_async_client_gets_the_same_exceptions(live, key):
    async def scenario():
        raised = []
        async with _async(live, "sk-wrong") as anonymous, _async(live, key) as client:
            for call in (
                anonymous.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}]),
                client.chat.completions.create(model="openai", messages=[{"role": "user", "content": "x"}]),
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=3),
            ):
                try:
                    await call
                except openai.APIStatusError as exc:
                    raised.append((type(exc), exc.status_code))
        return raised

    assert asyncio.run(scenario()) == [
        (openai.AuthenticationError, 401),
        (openai.NotFoundError, 404),
        (openai.BadRequestError, 400),
    ]


def test_the_platform_rate_limit_is_a_rate_limit_error_with_retry_after(providers, key):
    with platform_process(RATE_LIMIT_PER_MINUTE="2") as live:
        client = _sync(live, key)
        for _ in range(2):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])

    assert limited.value.status_code == 429
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert limited.value.body["type"] == "rate_limit_error"


def test_a_turn_error_mid_stream_is_an_error_frame(live, key, providers):
    providers["openai"].push(*[Fail(500, "upstream broke")] * 6)

    async def scenario():
        async with _async(live, key) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            chunks = []
            try:
                async for chunk in stream:
                    chunks.append(chunk)
            except openai.APIError as exc:
                return chunks, exc
            pytest.fail("the stream ended without its error")

    chunks, error = asyncio.run(scenario())

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["platform"]["status"] == "error"
    assert error.body["code"] == "provider_unavailable"


# --- any provider behind the front --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_openai_shaped_request_is_answered_by_each_provider(live, key, providers, kind):
    model = f"{kind}/{MODELS[kind]}"
    providers[kind].push(
        Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Rome"}, id=f"call_{kind}")]),
        Turn(text=f"{kind} says: warm in Rome."),
    )
    client = _sync(live, key)
    messages: list = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rome?"}]

    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call.model_dump()],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "warm"},
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])

    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Rome"})
    assert second.choices[0].message.content == f"{kind} says: warm in Rome."
    assert second.model == model
    assert providers[kind].requests[-1].body.count(b"warm") >= 1  # the result reached the provider


# --- load ---------------------------------------------------------------------------------------------------


def test_64_concurrent_completions_all_succeed(live, key, providers):
    async def one(client, n: int):
        try:
            completion = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Request {n}"}], store=n % 2 == 0
            )
            return completion.choices[0].message.content
        except openai.APIStatusError as exc:
            return exc.status_code

    async def scenario():
        limits = httpx.Limits(max_connections=64)
        async with openai.AsyncOpenAI(
            base_url=f"{live}/v1",
            api_key=key,
            max_retries=0,
            timeout=120,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits),
        ) as client:
            return await asyncio.gather(*(one(client, n) for n in range(64)))

    answers = asyncio.run(scenario())

    assert answers == ["ok"] * 64
    assert UsageRecord.objects.count() == 64
    assert Chat.objects.count() == 32


# --- images -------------------------------------------------------------------------------------------------

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_image_parts_reach_the_provider_and_one_it_cannot_take_is_a_400(live, key, providers):
    providers["openai"].push(Turn(text="A single pixel."))
    client = _sync(live, key)
    look = {"type": "text", "text": "What is this?"}

    described = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [look, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}],
            }
        ],
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=f"ollama/{MODELS['ollama']}",
            messages=[
                {"role": "user", "content": [look, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
            ],
        )
    with pytest.raises(openai.BadRequestError) as broken:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}],
        )

    assert described.choices[0].message.content == "A single pixel."
    parts = _wire_messages(providers)[-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{PIXEL}"
    assert (refused.value.body["code"], refused.value.body["param"]) == ("unsupported_content", "messages")
    assert (broken.value.body["code"], broken.value.body["param"]) == (
        "invalid_image",
        "messages[0].content[0].image_url.url",
    )
    assert not providers["ollama"].requests_to("/api/chat")


# --- admin --------------------------------------------------------------------------------------------------


def test_admin_alias_form_accepts_known_options_only(admin_client, providers):
    server = stdio_test_server()
    server.save()
    form = {
        "name": "helper",
        "description": "",
        "provider": str(Provider.objects.get(name="openai").pk),
        "model": MODELS["openai"],
        "system_prompt": "",
        "mcp_servers": [str(server.pk)],
        "enabled": "on",
    }

    typo = admin_client.post("/admin/chats/modelalias/add/", {**form, "options": '{"temprature": 0.2}'})
    wrong_type = admin_client.post("/admin/chats/modelalias/add/", {**form, "options": '{"max_tokens": "lots"}'})
    saved = admin_client.post("/admin/chats/modelalias/add/", {**form, "options": '{"temperature": 0.2}'})
    listing = admin_client.get("/admin/chats/modelalias/?q=help")

    assert typo.status_code == 200
    assert "Unknown option(s): temprature" in typo.content.decode()
    assert "Invalid option(s): max_tokens" in wrong_type.content.decode()
    assert saved.status_code == 302
    alias = ModelAlias.objects.get()
    assert (alias.options, [s.name for s in alias.mcp_servers.all()]) == ({"temperature": 0.2}, ["test"])
    assert "helper" in listing.content.decode()


# --- what a review found ----------------------------------------------------------------------------------


def test_bodies_json_cannot_store_or_parse_are_400s_not_500s(live, key):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deep = b'{"model": "' + MODEL.encode() + b'", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    infinite_argument = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"n": 1e400}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
    }

    nested = httpx.post(f"{live}/v1/chat/completions", content=deep, headers=headers)
    not_a_number = httpx.post(
        f"{live}/v1/chat/completions",
        content=b'{"model": "' + MODEL.encode() + b'", "temperature": NaN, "messages": []}',
        headers=headers,
    )
    out_of_range = httpx.post(f"{live}/v1/chat/completions", json=infinite_argument, headers=headers)

    assert (nested.status_code, nested.json()["error"]["code"]) == (400, "invalid_json")
    assert (not_a_number.status_code, not_a_number.json()["error"]["code"]) == (400, "invalid_json")
    # arguments that are not a finite JSON object are kept as the model's text, never stored as Infinity
    assert out_of_range.status_code == 200, out_of_range.text


def test_an_unknown_model_of_a_known_provider_is_not_found_and_duplicate_tools_are_refused(live, key, providers):
    client = _sync(live, key)
    hi = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="openai/gpt-nope", messages=hi)
    with pytest.raises(openai.BadRequestError) as twice:
        client.chat.completions.create(model=MODEL, messages=hi, tools=[WEATHER, WEATHER])
    with pytest.raises(openai.BadRequestError) as long_name:
        client.chat.completions.create(model="openai/" + "x" * 400, messages=hi)

    assert (unknown.value.body["code"], unknown.value.body["param"]) == ("model_not_found", "model")
    assert (twice.value.body["code"], twice.value.body["param"]) == ("duplicate_tool_name", "tools[1].function.name")
    assert long_name.value.body["param"] == "model"
    assert Chat.objects.count() == 0


def test_a_failed_turn_is_not_retried_by_the_sdk(live, key, providers):
    # the SDK's default: two retries of a 5xx, unless the answer says not to
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=key)
    providers["openai"].push(*[Fail(500, "upstream broke")] * 9)

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])

    # the adapter's own retries of the provider (3 calls), once: the platform's answer was not retried
    assert len(providers["openai"].requests_to("/chat/completions")) == 3
    assert Chat.objects.count() == 1


def test_a_client_call_beside_a_server_call_that_asks_still_reaches_the_client(providers, key):
    stdio_test_server().save()  # wipe is destructive: it asks
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"}), ToolCallSpec("get_weather", {"city": "Oslo"})])
    )

    with platform_process() as live:
        waiting = _sync(live, key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Wipe, and the weather"}],
            tools=[WEATHER],
            extra_body={"mcp_servers": ["test"]},
        )

    platform = waiting.model_extra["platform"]
    assert platform["status"] == "awaiting_approval"
    assert [call.function.name for call in waiting.choices[0].message.tool_calls] == ["get_weather"]


def test_an_unstored_request_does_not_wait_for_approvals_nobody_can_give(providers, key):
    stdio_test_server().save()  # wipe is destructive: it asks
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="I could not wipe it.")
    )

    with platform_process() as live:
        answer = _sync(live, key).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Wipe"}],
            extra_body={"mcp_servers": ["test"], "store": False},
        )

    assert answer.choices[0].message.content == "I could not wipe it."
    (execution,) = answer.model_extra["platform"]["tool_executions"]
    assert execution["is_error"] is True
    assert "store: false" in execution["content"]
    assert Chat.objects.count() == 0
