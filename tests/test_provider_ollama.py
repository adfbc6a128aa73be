"""OllamaAdapter through the real ``ollama`` SDK against a local server speaking Ollama's wire protocol."""

import re
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from providers.adapters.ollama import OllamaAdapter
from providers.base import ProviderConfig
from providers.errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.types import (
    Completion,
    FinishEvent,
    GenerationOptions,
    HealthResult,
    ImageBlock,
    Message,
    ModelInfo,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallBlock,
    ToolCallEvent,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    Usage,
    UsageEvent,
)

from .fakes.ollama_wire import OllamaWire
from .fakes.wire import Fail, ToolCallSpec, Turn

MODEL = "llama3.2"
GENERATED_ID = re.compile(r"^call_[0-9a-f]{24}$")
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
WEATHER_WIRE = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaWire]:
    wire = OllamaWire().start()
    yield wire
    wire.stop()


@pytest.fixture
def wire(server: OllamaWire) -> OllamaWire:
    server.reset()
    return server


def make_adapter(url: str, **overrides) -> OllamaAdapter:
    settings = {"api_key": "test-key", "retry_base_delay": 0.01, "retry_max_delay": 0.2, **overrides}
    return OllamaAdapter(ProviderConfig(name="ollama", kind="ollama", base_url=url, **settings))


@pytest.fixture
async def adapter(wire: OllamaWire) -> AsyncIterator[OllamaAdapter]:
    adapter = make_adapter(wire.url)
    yield adapter
    await adapter.client.close()


async def collect(adapter: OllamaAdapter, **kwargs) -> list[StreamEvent]:
    return [event async for event in adapter.stream(model=MODEL, **kwargs)]


async def reply(adapter: OllamaAdapter, streamed: bool) -> Message:
    """The assistant message of one call to ``Hi``, through stream() or complete()."""
    if streamed:
        finish = (await collect(adapter, messages=[Message.user("Hi")]))[-1]
        assert isinstance(finish, FinishEvent)
        return finish.message
    return (await adapter.complete(messages=[Message.user("Hi")], model=MODEL)).message


def chat_bodies(wire: OllamaWire) -> list[dict]:
    return [r.json for r in wire.requests_to("/api/chat")]


# --- text ------------------------------------------------------------------------------


async def test_complete_returns_plain_text_from_a_json_reply(wire, adapter):
    wire.push(Turn(text="Hello there!", input_tokens=12, output_tokens=3))

    completion = await adapter.complete(
        messages=[Message.user("Hi")],
        model=MODEL,
        system="Be brief.",
        options=GenerationOptions(max_tokens=100, temperature=0.2, stop=["END"]),
    )

    assert completion == Completion(
        message=Message(role="assistant", content=[TextBlock(text="Hello there!")]),
        usage=Usage(input_tokens=12, output_tokens=3),
        stop_reason="end",
        raw_reason="stop",
        model=MODEL,
        latency_ms=completion.latency_ms,
    )
    [request] = wire.requests_to("/api/chat")
    assert request.headers["authorization"] == "Bearer test-key"
    # The SDK always sends a tools array; an empty one means no tools to the server.
    assert request.json == {
        "model": MODEL,
        "stream": False,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "tools": [],
        "options": {"num_predict": 100, "temperature": 0.2, "stop": ["END"]},
    }


async def test_stream_yields_text_pieces_then_usage_and_the_assembled_message(wire, adapter):
    wire.push(Turn(text="Hello, world!", chunk_size=4, input_tokens=7, output_tokens=4))

    events = await collect(adapter, messages=[Message.user("Greet me")])

    usage = Usage(input_tokens=7, output_tokens=4)
    assert events == [
        TextDelta(text="Hell"),
        TextDelta(text="o, w"),
        TextDelta(text="orld"),
        TextDelta(text="!"),
        UsageEvent(usage=usage),
        FinishEvent(
            reason="end",
            raw_reason="stop",
            message=Message(role="assistant", content=[TextBlock(text="Hello, world!")]),
            usage=usage,
            model=MODEL,
        ),
    ]
    assert chat_bodies(wire) == [
        {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Greet me"}], "tools": []}
    ]


async def test_length_stop_is_normalised(wire, adapter):
    wire.push(Turn(text="cut sho", stop="length"))

    completion = await adapter.complete(messages=[Message.user("Go on")], model=MODEL)

    assert (completion.stop_reason, completion.raw_reason) == ("length", "length")


# --- tool calls ----------------------------------------------------------------------------


async def test_stream_tool_call_gets_an_id_and_reason_tool_calls(wire, adapter):
    wire.push(Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"})], input_tokens=30, output_tokens=9))

    events = await collect(adapter, messages=[Message.user("Weather in Paris?")], tools=[WEATHER])

    [call_event] = [e for e in events if isinstance(e, ToolCallEvent)]
    call = call_event.call
    assert GENERATED_ID.match(call.id)
    assert (call.name, call.arguments, call.invalid_arguments) == ("get_weather", {"city": "Paris"}, None)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert (finish.reason, finish.raw_reason) == ("tool_calls", "stop")
    assert finish.message == Message(role="assistant", content=[call])
    assert finish.usage == Usage(input_tokens=30, output_tokens=9)
    assert chat_bodies(wire)[0]["tools"] == [WEATHER_WIRE]


async def test_complete_tool_call_from_a_json_reply(wire, adapter):
    # Newer servers send an id; the 0.6 SDK's models drop it, so the adapter makes its own.
    wire.push(Turn(text="Let me check.", tool_calls=[ToolCallSpec("get_weather", {"city": "Oslo"}, id="srv_1")]))

    completion = await adapter.complete(messages=[Message.user("Oslo?")], model=MODEL, tools=[WEATHER])

    text, call = completion.message.content
    assert text == TextBlock(text="Let me check.")
    assert isinstance(call, ToolCallBlock)
    assert GENERATED_ID.match(call.id)
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo"})
    assert (completion.stop_reason, completion.raw_reason) == ("tool_calls", "stop")


async def test_two_parallel_tool_calls_in_one_streamed_reply(wire, adapter):
    wire.push(
        Turn(
            text="Checking both.",
            tool_calls=[ToolCallSpec("get_weather", {"city": "Paris"}), ToolCallSpec("get_weather", {"city": "Rome"})],
        )
    )

    events = await collect(adapter, messages=[Message.user("Paris and Rome?")], tools=[WEATHER])

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert all(GENERATED_ID.match(c.id) for c in calls)
    assert calls[0].id != calls[1].id
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert finish.reason == "tool_calls"
    assert finish.message == Message(role="assistant", content=[TextBlock(text="Checking both."), *calls])


async def test_tool_results_go_back_as_tool_messages_keyed_by_name(wire, adapter):
    # given: a history written by a provider that keys results by id (one result without a name)
    history = [
        Message.user("Paris and Rome?"),
        Message(
            role="assistant",
            content=[
                ToolCallBlock(id="call_a", name="get_weather", arguments={"city": "Paris"}),
                ToolCallBlock(id="call_b", name="get_time", arguments={"tz": "Europe/Rome"}),
            ],
        ),
        Message(
            role="tool",
            content=[
                ToolResultBlock(tool_call_id="call_a", name="get_weather", content="18C, sunny"),
                ToolResultBlock(tool_call_id="call_b", content="unknown zone", is_error=True),
            ],
        ),
    ]
    wire.push(Turn(text="Sunny in Paris."))

    # when
    completion = await adapter.complete(messages=history, model=MODEL, tools=[WEATHER])

    # then
    assert completion.message.text == "Sunny in Paris."
    [body] = chat_bodies(wire)
    # The SDK leaves out the empty content of an assistant turn that only called tools.
    assert body["messages"] == [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"tz": "Europe/Rome"}}},
            ],
        },
        {"role": "tool", "content": "18C, sunny", "tool_name": "get_weather"},
        {"role": "tool", "content": "Error: unknown zone", "tool_name": "get_time"},
    ]
    assert wire.validate(body) == []


# --- usage ---------------------------------------------------------------------------------


async def test_usage_is_normalised_without_cache_or_reasoning_split(wire, adapter):
    # Ollama reports only prompt_eval_count and eval_count (thinking included), whatever the turn says.
    wire.push(Turn(text="ok", thinking="hmm", input_tokens=1200, output_tokens=345, cached_tokens=1000))
    wire.push(Turn(text="ok", input_tokens=1200, output_tokens=345, reasoning_tokens=100))

    events = await collect(adapter, messages=[Message.user("Hi")], options=GenerationOptions(thinking_budget=512))
    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    expected = Usage(input_tokens=1200, output_tokens=345, cache_read_tokens=0, reasoning_tokens=0)
    assert [e.usage for e in events if isinstance(e, UsageEvent | FinishEvent)] == [expected, expected]
    assert completion.usage == expected


# --- errors and retries --------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_rate_limit_honours_retry_after_then_succeeds(wire, streamed):
    # retry_max_delay caps Retry-After in the base class, so it must exceed the header here.
    adapter = make_adapter(wire.url, retry_max_delay=1.0)
    wire.push(Fail(429, "too many requests", retry_after=0.3), Turn(text="done"))

    started = time.monotonic()
    message = await reply(adapter, streamed)
    elapsed = time.monotonic() - started

    assert message.text == "done"
    assert len(wire.requests_to("/api/chat")) == 2
    assert 0.3 <= elapsed < 1.0
    await adapter.client.close()


async def test_rate_limit_error_carries_retry_after_and_status(wire):
    adapter = make_adapter(wire.url, max_retries=0)
    wire.push(Fail(429, "slow down", retry_after=7))

    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert (caught.value.status, caught.value.retry_after, caught.value.message) == (429, 7.0, "slow down")
    await adapter.client.close()


@pytest.mark.parametrize("streamed", [False, True])
async def test_persistent_500_is_unavailable_after_all_retries(wire, streamed):
    adapter = make_adapter(wire.url, max_retries=2)
    wire.push(*[Fail(500, "llama runner process has terminated")] * 3, Turn(text="never"))

    with pytest.raises(ProviderUnavailable) as caught:
        await reply(adapter, streamed)

    assert (caught.value.status, caught.value.message) == (500, "llama runner process has terminated")
    assert caught.value.provider == "ollama"
    assert len(wire.requests_to("/api/chat")) == 3
    await adapter.client.close()


async def test_401_is_an_authentication_error_without_retry(wire, adapter):
    wire.push(Fail(401, "unauthorized"), Turn(text="never"))

    with pytest.raises(ProviderAuthenticationError) as caught:
        await collect(adapter, messages=[Message.user("Hi")])

    assert (caught.value.status, caught.value.message) == (401, "unauthorized")
    assert len(wire.requests_to("/api/chat")) == 1


async def test_unknown_model_is_a_bad_request_with_ollamas_message(wire, adapter):
    with pytest.raises(ProviderBadRequest) as caught:
        await adapter.complete(messages=[Message.user("Hi")], model="nope")

    assert (caught.value.status, caught.value.message) == (404, 'model "nope" not found, try pulling it first')
    assert len(wire.requests_to("/api/chat")) == 1


async def test_tool_result_without_a_call_is_rejected_by_the_server(wire, adapter):
    wire.push(Turn(text="never"))
    history = [
        Message.user("Hi"),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_x", name="get_weather", content="18C")]),
    ]

    with pytest.raises(ProviderBadRequest) as caught:
        await adapter.complete(messages=history, model=MODEL)

    assert caught.value.status == 400
    assert caught.value.message == "messages[1]: a tool message must follow an assistant message with tool_calls"
    assert len(wire.requests_to("/api/chat")) == 1
    assert len(wire.script) == 1  # the scripted reply was not consumed


async def test_tool_result_for_another_tool_is_rejected(wire, adapter):
    history = [
        Message.user("Hi"),
        Message(role="assistant", content=[ToolCallBlock(id="call_a", name="get_weather", arguments={"city": "X"})]),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_z", name="get_time", content="noon")]),
    ]

    with pytest.raises(ProviderBadRequest) as caught:
        await collect(adapter, messages=history)

    assert caught.value.message == (
        "messages[2].tool_name 'get_time' matches no unanswered tool call of the assistant turn"
    )


async def test_unreachable_server_is_unavailable(wire):
    adapter = make_adapter("http://127.0.0.1:9", max_retries=1)

    with pytest.raises(ProviderUnavailable):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderUnavailable):
        await collect(adapter, messages=[Message.user("Hi")])
    await adapter.client.close()


async def test_slow_stream_times_out(wire):
    adapter = make_adapter(wire.url, timeout=0.05, max_retries=0)
    wire.stream_delay = 0.2
    wire.push(Turn(text="slow words"))

    with pytest.raises(ProviderTimeout):
        await collect(adapter, messages=[Message.user("Hi")])
    await adapter.client.close()


# --- models and health ---------------------------------------------------------------------


async def test_list_models_reads_api_tags(wire, adapter):
    models = await adapter.list_models()

    assert models == [
        ModelInfo(id="llama3.2:latest", display_name="llama3.2:latest"),
        ModelInfo(id="qwen3:8b", display_name="qwen3:8b"),
        ModelInfo(id="gpt-oss:20b", display_name="gpt-oss:20b"),
    ]
    assert [r.path for r in wire.requests] == ["/api/tags"]


async def test_health_ok_and_error_on_401(wire, adapter):
    ok = await adapter.health()
    wire.push(Fail(401, "unauthorized"))
    failed = await adapter.health()

    assert ok.status == "ok"
    assert failed == HealthResult(
        status="error", latency_ms=failed.latency_ms, error="unauthorized", code="provider_authentication_failed"
    )


async def test_no_api_key_is_needed_and_none_is_sent(wire, monkeypatch):
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    adapter = make_adapter(wire.url, api_key=None)
    wire.push(Turn(text="local"))

    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert adapter.configured is True
    assert completion.message.text == "local"
    assert "authorization" not in wire.requests_to("/api/chat")[0].headers
    await adapter.client.close()


# --- thinking ------------------------------------------------------------------------------


async def test_thinking_streams_and_is_replayed_only_to_ollama(wire, adapter):
    wire.push(Turn(thinking="Six times seven.", text="42", chunk_size=8), Turn(text="ok"))

    events = await collect(
        adapter, messages=[Message.user("6*7?")], options=GenerationOptions(thinking_budget=1024, max_tokens=2048)
    )

    assert events[:3] == [ThinkingDelta(text="Six time"), ThinkingDelta(text="s seven."), TextDelta(text="42")]
    reply = events[-1].message
    # Ollama's thinking carries no signature: the text itself is what goes back.
    assert reply == Message(
        role="assistant", content=[ThinkingBlock(text="Six times seven.", origin="ollama"), TextBlock(text="42")]
    )
    assert chat_bodies(wire)[0]["think"] is True
    assert chat_bodies(wire)[0]["options"] == {"num_predict": 2048}

    # when: replayed with another provider's turn in the history
    foreign = Message(
        role="assistant",
        content=[
            ThinkingBlock(text="Anthropic musing", signature="sig-abc", origin="anthropic"),
            TextBlock(text="Earlier answer.", origin="gemini", opaque={"thought_signature": "gem-sig"}),
        ],
    )
    history = [Message.user("Hi"), foreign, Message.user("6*7?"), reply, Message.user("Thanks")]
    await adapter.complete(messages=history, model=MODEL)

    # then
    replay = wire.requests_to("/api/chat")[1]
    assert replay.json["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Earlier answer."},
        {"role": "user", "content": "6*7?"},
        {"role": "assistant", "content": "42", "thinking": "Six times seven."},
        {"role": "user", "content": "Thanks"},
    ]
    assert b"sig-abc" not in replay.body
    assert b"gem-sig" not in replay.body
    assert b"Anthropic musing" not in replay.body
    assert "think" not in replay.json


# --- generation options and images ----------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_options_reach_the_wire_in_ollama_terms(wire, adapter):
    # given
    options = GenerationOptions(
        top_p=0.9,
        seed=11,
        stop=["END"],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}},
        tool_choice=ToolChoice(mode="auto"),
    )

    # when
    await adapter.complete(messages=[Message.user("Paris?")], model=MODEL, tools=[WEATHER], options=options)

    # then
    [body] = chat_bodies(wire)
    assert body["options"] == {"top_p": 0.9, "seed": 11, "stop": ["END"]}
    assert body["format"] == CITY_SCHEMA
    assert body["tools"] == [WEATHER_WIRE]
    assert OllamaAdapter.unsupported_options(options) == []


async def test_json_object_is_format_json_and_tool_choice_none_offers_no_tools(wire, adapter):
    options = GenerationOptions(response_format={"type": "json_object"}, tool_choice=ToolChoice(mode="none"))

    await collect(adapter, messages=[Message.user("Paris?")], tools=[WEATHER], options=options)

    [body] = chat_bodies(wire)
    assert body["format"] == "json"
    assert not body.get("tools")


@pytest.mark.parametrize(
    ("choice", "unsupported"),
    [
        (ToolChoice(mode="required"), ["tool_choice"]),
        (ToolChoice(mode="tool", name="get_weather"), ["tool_choice"]),
        (ToolChoice(mode="none"), []),
        (ToolChoice(mode="auto"), []),
    ],
)
def test_only_auto_and_none_tool_choices_are_honoured(choice: ToolChoice, unsupported: list[str]):
    assert OllamaAdapter.unsupported_options(GenerationOptions(tool_choice=choice, seed=1, top_p=0.5)) == unsupported


async def test_images_go_as_base64_and_a_url_becomes_a_placeholder(wire, adapter):
    # given: history from a provider that took the url as it is
    history = [
        Message(role="user", content=[TextBlock(text="What is this?"), ImageBlock(data=PNG, media_type="image/png")]),
        Message(role="assistant", content=[TextBlock(text="A pixel.")]),
        Message(role="user", content=[TextBlock(text="And this?"), ImageBlock(url="https://example.com/cat.jpg")]),
    ]

    # when
    await collect(adapter, messages=history)

    # then: nothing is fetched; the model is told where the image was
    [body] = chat_bodies(wire)
    assert body["messages"] == [
        {"role": "user", "content": "What is this?", "images": [PNG]},
        {"role": "assistant", "content": "A pixel."},
        {"role": "user", "content": "And this?\n[image: https://example.com/cat.jpg]"},
    ]
    assert OllamaAdapter.unsupported_content(history) == ["image_url"]
    assert OllamaAdapter.unsupported_content(history[:2]) == []


# --- the fake's validator ------------------------------------------------------------------


def test_validator_accepts_a_full_valid_request(server):
    body = {
        "model": MODEL,
        "stream": True,
        "think": "low",
        "options": {"num_predict": 10, "temperature": 0.5, "stop": ["x"]},
        "tools": [WEATHER_WIRE],
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "a", "arguments": {}}}] * 2},
            {"role": "tool", "content": "r1", "tool_name": "a"},
            {"role": "tool", "content": "r2", "tool_name": "a"},
            {"role": "assistant", "content": "done"},
        ],
    }

    assert server.validate(body) == []


def test_validator_reports_each_structural_problem(server):
    body = {
        "model": "",
        "options": [],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "array"}}}],
        "messages": [
            {"role": "developer", "content": "x"},
            {"role": "user", "content": 3},
            {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": '{"q": 1}'}}]},
            {"role": "tool", "content": "r", "tool_name": "a"},
            {"role": "tool", "content": "r", "tool_name": "a"},
        ],
    }

    assert server.validate(body) == [
        "model is required",
        "options must be an object",
        'tools[0].function.parameters must be an object schema with type "object"',
        "messages[0].role must be one of system, user, assistant, tool, not 'developer'",
        "messages[1].content must be a string",
        "json: cannot unmarshal string into Go struct field ToolCallFunction.messages[2].tool_calls[0].function"
        ".arguments of type api.ToolCallFunctionArguments (arguments must be an object)",
        "messages[4].tool_name 'a' matches no unanswered tool call of the assistant turn",
    ]


def test_validator_checks_images_and_format(server):
    body = {
        "model": MODEL,
        "format": "yaml",
        "messages": [{"role": "user", "content": "x", "images": ["https://example.com/cat.jpg"]}],
    }

    assert server.validate(body) == [
        "invalid format: 'yaml' (want \"json\" or a JSON schema object)",
        "messages[0].images must be an array of base64 strings",
    ]
