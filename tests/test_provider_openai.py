"""The OpenAI adapter through the real SDK, against a local server speaking the Chat Completions wire."""

import time

import httpx2
import openai
import pytest

from providers.adapters.openai import OpenAIAdapter
from providers.base import ProviderConfig
from providers.errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.types import (
    Capabilities,
    FinishEvent,
    GenerationOptions,
    ImageBlock,
    Message,
    ModelInfo,
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
from tests.fakes.openai_wire import OpenAIWire
from tests.fakes.wire import Fail, ToolCallSpec, Turn

MODEL = "gpt-4o"
WEATHER = ToolSpec(
    name="weather__forecast",
    description="Forecast for a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
def server():
    wire = OpenAIWire().start()
    yield wire
    wire.stop()


@pytest.fixture
def wire(server):
    server.reset()
    return server


def make_adapter(wire: OpenAIWire, **overrides) -> OpenAIAdapter:
    settings = {
        "name": "openai",
        "kind": "openai",
        "base_url": f"{wire.url}/v1",
        "api_key": "test-key",
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.2,
        **overrides,
    }
    return OpenAIAdapter(ProviderConfig(**settings))


@pytest.fixture
def adapter(wire) -> OpenAIAdapter:
    return make_adapter(wire)


async def collect(adapter: OpenAIAdapter, **kwargs) -> list:
    return [event async for event in adapter.stream(model=MODEL, **kwargs)]


def chat_bodies(wire: OpenAIWire) -> list[dict]:
    return [request.json for request in wire.requests_to("/chat/completions")]


# --- text ------------------------------------------------------------------------------


async def test_complete_returns_text_usage_and_sends_system_and_options(wire, adapter):
    wire.push(Turn(text="Hello there!", input_tokens=12, output_tokens=3))

    completion = await adapter.complete(
        messages=[Message.user("Hi")],
        model=MODEL,
        system="Be brief.",
        options=GenerationOptions(max_tokens=50, temperature=0.2, stop=["END"], thinking_budget=1024),
    )

    assert completion.message == Message(role="assistant", content=[TextBlock(text="Hello there!")])
    assert completion.stop_reason == "end"
    assert completion.raw_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage == Usage(input_tokens=12, output_tokens=3)
    [body] = chat_bodies(wire)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": ["END"],
    }
    assert wire.requests[0].headers["authorization"] == "Bearer test-key"


async def test_stream_yields_text_deltas_then_usage_then_finish(wire, adapter):
    wire.push(Turn(text="Hello, streaming world", chunk_size=6, input_tokens=7, output_tokens=4))

    events = await collect(adapter, messages=[Message.user("Hi")])

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello,", " strea", "ming w", "orld"]
    assert events[-2] == UsageEvent(usage=Usage(input_tokens=7, output_tokens=4))
    finish = events[-1]
    assert finish == FinishEvent(
        reason="end",
        raw_reason="stop",
        message=Message(role="assistant", content=[TextBlock(text="Hello, streaming world")]),
        usage=Usage(input_tokens=7, output_tokens=4),
        model=MODEL,
    )
    [body] = chat_bodies(wire)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "tools" not in body


@pytest.mark.parametrize(
    ("stop", "reason", "raw"), [("length", "length", "length"), ("refused", "refused", "content_filter")]
)
async def test_stop_reasons_are_normalised(wire, adapter, stop, reason, raw):
    wire.push(Turn(text="partial", stop=stop))

    events = await collect(adapter, messages=[Message.user("Hi")])

    assert (events[-1].reason, events[-1].raw_reason) == (reason, raw)


# --- tool calls ------------------------------------------------------------------------


async def test_stream_one_tool_call(wire, adapter):
    wire.push(
        Turn(text="Let me check.", tool_calls=[ToolCallSpec("weather__forecast", {"city": "Paris"}, id="call_abc")])
    )

    events = await collect(adapter, messages=[Message.user("Weather in Paris?")], tools=[WEATHER])

    call = ToolCallBlock(id="call_abc", name="weather__forecast", arguments={"city": "Paris"})
    assert [e for e in events if isinstance(e, ToolCallEvent)] == [ToolCallEvent(call=call)]
    finish = events[-1]
    assert finish.reason == "tool_calls"
    assert finish.raw_reason == "tool_calls"
    assert finish.message == Message(role="assistant", content=[TextBlock(text="Let me check."), call])
    [body] = chat_bodies(wire)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather__forecast",
                "description": "Forecast for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]


async def test_complete_one_tool_call(wire, adapter):
    wire.push(Turn(tool_calls=[ToolCallSpec("weather__forecast", {"city": "Oslo", "days": 3}, id="call_json")]))

    completion = await adapter.complete(messages=[Message.user("Weather?")], model=MODEL, tools=[WEATHER])

    assert completion.message == Message(
        role="assistant",
        content=[ToolCallBlock(id="call_json", name="weather__forecast", arguments={"city": "Oslo", "days": 3})],
    )
    assert completion.stop_reason == "tool_calls"


async def test_stream_two_parallel_tool_calls_with_interleaved_pieces(wire, adapter):
    wire.interleave_tool_calls = True
    wire.push(
        Turn(
            tool_calls=[
                ToolCallSpec("weather__forecast", {"city": "Paris", "unit": "celsius"}, id="call_1"),
                ToolCallSpec("clock__now", {"timezone": "Europe/Oslo"}, id="call_2"),
            ],
            chunk_size=3,
        )
    )

    events = await collect(adapter, messages=[Message.user("Weather and time?")], tools=[WEATHER])

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [
        ToolCallBlock(id="call_1", name="weather__forecast", arguments={"city": "Paris", "unit": "celsius"}),
        ToolCallBlock(id="call_2", name="clock__now", arguments={"timezone": "Europe/Oslo"}),
    ]
    assert events[-1].reason == "tool_calls"
    assert events[-1].message.tool_calls == calls
    assert not [e for e in events if isinstance(e, TextDelta)]


async def test_invalid_tool_arguments_are_kept_raw(wire, adapter, monkeypatch):
    wire.push(Turn(tool_calls=[ToolCallSpec("weather__forecast", {}, id="call_bad")]))
    truncated = [  # the model stopped mid-arguments: not JSON
        {"index": 0, "id": "call_bad", "type": "function", "function": {"name": "weather__forecast", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": "Par'}},
    ]
    monkeypatch.setattr(wire, "_tool_call_pieces", lambda turn: truncated)

    events = await collect(adapter, messages=[Message.user("Weather?")], tools=[WEATHER])

    [event] = [e for e in events if isinstance(e, ToolCallEvent)]
    assert event.call == ToolCallBlock(
        id="call_bad", name="weather__forecast", arguments={}, invalid_arguments='{"city": "Par'
    )


async def test_tool_results_are_sent_back_as_tool_messages(wire, adapter):
    history = [
        Message.user("Weather in Paris and Oslo?"),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Checking both."),
                ToolCallBlock(id="call_1", name="weather__forecast", arguments={"city": "Paris"}),
                ToolCallBlock(id="call_2", name="weather__forecast", arguments={"city": "Oslo"}),
            ],
        ),
        Message(
            role="tool",
            content=[
                ToolResultBlock(tool_call_id="call_1", name="weather__forecast", content="18C, sunny"),
                ToolResultBlock(tool_call_id="call_2", name="weather__forecast", content="no data", is_error=True),
            ],
        ),
    ]
    wire.push(Turn(text="Paris is sunny; Oslo is unknown."))

    completion = await adapter.complete(messages=history, model=MODEL, tools=[WEATHER])

    assert completion.message.text == "Paris is sunny; Oslo is unknown."
    [body] = chat_bodies(wire)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather__forecast", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather__forecast", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: no data"},
    ]
    assert wire.validate(body) == []


async def test_history_from_other_providers_drops_their_thinking_and_opaque_data(wire, adapter):
    history = [
        Message.user("Plan my day"),
        Message(
            role="assistant",
            content=[
                ThinkingBlock(text="Let me think", signature="sig-anthropic", origin="anthropic"),
                TextBlock(text="Checking the weather.", origin="gemini", opaque={"thought_signature": "gem-sig"}),
                ToolCallBlock(
                    id="toolu_01",
                    name="weather__forecast",
                    arguments={"city": "Rome"},
                    origin="gemini",
                    opaque={"thought_signature": "gem-sig-2"},
                ),
            ],
        ),
        Message(
            role="tool", content=[ToolResultBlock(tool_call_id="toolu_01", name="weather__forecast", content="25C")]
        ),
        Message(role="assistant", content=[ThinkingBlock(text="only thoughts", signature="s", origin="anthropic")]),
        Message.user("And tomorrow?"),
    ]
    wire.push(Turn(text="Also warm."))

    await adapter.complete(messages=history, model=MODEL, tools=[WEATHER])

    [body] = chat_bodies(wire)
    assert body["messages"] == [
        {"role": "user", "content": "Plan my day"},
        {
            "role": "assistant",
            "content": "Checking the weather.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "weather__forecast", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "25C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert "sig" not in str(body)


async def test_reasoning_from_compatible_servers_becomes_thinking_and_is_never_replayed(wire, adapter):
    # OpenAI has no reasoning on this wire; vLLM / DeepSeek send it as `reasoning_content`.
    wire.push(Turn(thinking="Two plus two is four.", text="4", chunk_size=8, reasoning_tokens=6, output_tokens=9))

    events = await collect(adapter, messages=[Message.user("2+2?")])

    assert [e.text for e in events if isinstance(e, ThinkingDelta)] == ["Two plus", " two is ", "four."]
    finish = events[-1]
    assert finish.message == Message(
        role="assistant", content=[ThinkingBlock(text="Two plus two is four."), TextBlock(text="4")]
    )
    assert finish.usage.reasoning_tokens == 6
    assert adapter.capabilities.thinking is False

    wire.push(Turn(text="ok"))
    await adapter.complete(messages=[Message.user("2+2?"), finish.message, Message.user("Sure?")], model=MODEL)

    replayed = chat_bodies(wire)[-1]
    assert replayed["messages"][1] == {"role": "assistant", "content": "4"}


# --- usage -----------------------------------------------------------------------------


async def test_usage_counts_cached_and_reasoning_tokens(wire, adapter):
    wire.push(
        Turn(text="a", input_tokens=1200, cached_tokens=1024, output_tokens=300, reasoning_tokens=256),
        Turn(text="b", input_tokens=1200, cached_tokens=1024, output_tokens=300, reasoning_tokens=256),
    )
    expected = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024, reasoning_tokens=256)

    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    events = await collect(adapter, messages=[Message.user("Hi")])

    assert completion.usage == expected
    assert [e.usage for e in events if isinstance(e, UsageEvent)] == [expected]
    assert events[-1].usage == expected


# --- errors and retries ----------------------------------------------------------------


async def test_rate_limit_waits_for_retry_after_then_succeeds(wire):
    adapter = make_adapter(wire, retry_max_delay=1.0)  # the default 0.2 s cap would cut Retry-After short
    wire.push(Fail(429, "Rate limit reached for gpt-4o", retry_after=0.3), Turn(text="done"))

    started = time.perf_counter()
    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    elapsed = time.perf_counter() - started

    assert completion.message.text == "done"
    assert len(chat_bodies(wire)) == 2
    assert elapsed >= 0.3


async def test_stream_retries_a_rate_limit_before_the_first_event(wire, adapter):
    wire.push(Fail(429, "slow down", retry_after=0.05), Turn(text="streamed"))

    events = await collect(adapter, messages=[Message.user("Hi")])

    assert events[-1].message.text == "streamed"
    assert len(chat_bodies(wire)) == 2


async def test_persistent_server_error_gives_unavailable_after_all_retries(wire):
    adapter = make_adapter(wire, max_retries=2)
    wire.push(*[Fail(500, "The server had an error while processing your request.")] * 3)

    with pytest.raises(ProviderUnavailable) as caught:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert len(chat_bodies(wire)) == 3
    assert caught.value.status == 500
    assert caught.value.message == "The server had an error while processing your request."
    assert caught.value.provider == "openai"


async def test_authentication_error_is_not_retried(wire, adapter):
    wire.push(Fail(401, "Incorrect API key provided: test-key."))

    with pytest.raises(ProviderAuthenticationError) as caught:
        await collect(adapter, messages=[Message.user("Hi")])

    assert len(chat_bodies(wire)) == 1
    assert caught.value.status == 401
    assert caught.value.message == "Incorrect API key provided: test-key."


async def test_invalid_history_is_rejected_as_bad_request_without_retry(wire, adapter):
    orphan = Message(role="tool", content=[ToolResultBlock(tool_call_id="call_missing", content="42")])
    wire.push(Turn(text="never sent"))

    with pytest.raises(ProviderBadRequest) as caught:
        await adapter.complete(messages=[Message.user("Hi"), orphan], model=MODEL)

    assert caught.value.status == 400
    assert caught.value.message == (
        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
        "'tool_calls' ('messages[1]', tool_call_id call_missing)."
    )
    assert len(chat_bodies(wire)) == 1
    assert list(wire.script) == [Turn(text="never sent")]  # the fake kept its scripted reply


async def test_unanswered_tool_call_is_rejected(wire, adapter):
    history = [
        Message.user("Hi"),
        Message(role="assistant", content=[ToolCallBlock(id="call_x", name="t", arguments={})]),
        Message.user("never mind"),
    ]

    with pytest.raises(ProviderBadRequest) as caught:
        await adapter.complete(messages=history, model=MODEL)

    assert caught.value.message.endswith("The following tool_call_ids did not have response messages: call_x")


async def test_unreachable_server_is_unavailable(wire):
    adapter = make_adapter(wire, base_url="http://127.0.0.1:9/v1", max_retries=0)

    with pytest.raises(ProviderUnavailable):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)


def test_map_error_covers_timeouts_and_unknown_errors(adapter):
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")

    timeout = adapter.map_error(openai.APITimeoutError(request=request))
    stream_error = adapter.map_error(openai.APIError("boom", request, body={"message": "boom", "type": "server_error"}))
    other = adapter.map_error(ValueError("odd"))

    assert (type(timeout), timeout.retryable) == (ProviderTimeout, True)
    assert (type(stream_error), stream_error.message) == (ProviderUnavailable, "boom")
    assert (type(other), other.message) == (ProviderError, "ValueError: odd")


async def test_rate_limit_error_carries_retry_after(wire):
    adapter = make_adapter(wire, max_retries=0)
    wire.push(Fail(429, "Too many requests", retry_after=1.5))

    with pytest.raises(ProviderRateLimited) as caught:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert (caught.value.retry_after, caught.value.status) == (1.5, 429)


# --- models, health, configuration -----------------------------------------------------


async def test_list_models(wire, adapter):
    models = await adapter.list_models()

    assert models == [
        ModelInfo(id="gpt-4o", display_name="gpt-4o"),
        ModelInfo(id="gpt-4o-mini", display_name="gpt-4o-mini"),
        ModelInfo(id="o3-mini", display_name="o3-mini"),
    ]
    assert [r.path for r in wire.requests] == ["/v1/models"]


async def test_health_ok_and_error(wire, adapter):
    ok = await adapter.health()
    wire.push(Fail(401, "Incorrect API key provided."))
    failed = await adapter.health()

    assert ok.status == "ok"
    assert (failed.status, failed.code, failed.error) == (
        "error",
        "provider_authentication_failed",
        "Incorrect API key provided.",
    )
    assert len(wire.requests_to("/v1/models")) == 2


async def test_missing_api_key_raises_without_any_request(wire):
    adapter = make_adapter(wire, api_key=None)

    with pytest.raises(ProviderNotConfigured):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderNotConfigured):
        await collect(adapter, messages=[Message.user("Hi")])
    with pytest.raises(ProviderNotConfigured):
        await adapter.list_models()
    health = await adapter.health()

    assert health.code == "provider_not_configured"
    assert wire.requests == []


# --- generation options and images ------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_every_option_reaches_the_wire_in_openai_terms(wire, adapter):
    # given
    options = GenerationOptions(
        top_p=0.9,
        seed=42,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True}},
        tool_choice=ToolChoice(mode="tool", name=WEATHER.name),
    )

    # when
    await adapter.complete(messages=[Message.user("Paris?")], model=MODEL, tools=[WEATHER], options=options)

    # then
    [body] = chat_bodies(wire)
    assert {key: body[key] for key in ("top_p", "seed", "response_format", "tool_choice")} == {
        "top_p": 0.9,
        "seed": 42,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True},
        },
        "tool_choice": {"type": "function", "function": {"name": WEATHER.name}},
    }
    assert OpenAIAdapter.unsupported_options(options) == []


@pytest.mark.parametrize(("mode", "wire_value"), [("auto", "auto"), ("none", "none"), ("required", "required")])
async def test_tool_choice_modes_are_sent_as_openai_words(wire, adapter, mode: str, wire_value: str):
    options = GenerationOptions(
        tool_choice=ToolChoice.model_validate({"mode": mode}), response_format={"type": "json_object"}
    )

    await collect(adapter, messages=[Message.user("Paris?")], tools=[WEATHER], options=options)

    [body] = chat_bodies(wire)
    assert (body["tool_choice"], body["response_format"]) == (wire_value, {"type": "json_object"})


async def test_tool_choice_that_no_tool_can_satisfy_is_refused_before_any_request(wire, adapter):
    with pytest.raises(ProviderBadRequest, match="needs tools"):
        await adapter.complete(
            messages=[Message.user("Hi")],
            model=MODEL,
            options=GenerationOptions(tool_choice=ToolChoice(mode="required")),
        )
    with pytest.raises(ProviderBadRequest, match="'nope', which is not among"):
        await collect(
            adapter,
            messages=[Message.user("Hi")],
            tools=[WEATHER],
            options=GenerationOptions(tool_choice=ToolChoice(mode="tool", name="nope")),
        )

    assert wire.requests == []


async def test_images_go_as_image_url_parts_in_their_order(wire, adapter):
    message = Message(
        role="user",
        content=[
            TextBlock(text="Compare"),
            ImageBlock(data=PNG, media_type="image/png"),
            TextBlock(text="with"),
            ImageBlock(url="https://example.com/cat.jpg"),
        ],
    )

    await collect(adapter, messages=[message])

    [body] = chat_bodies(wire)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "with"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]
    assert OpenAIAdapter.unsupported_content([message]) == []


class _TextOnlyAdapter(OpenAIAdapter):
    """An OpenAI-compatible server whose models cannot see images."""

    capabilities = Capabilities(tools=True, streaming=True, vision=False)


async def test_a_server_without_vision_gets_a_placeholder_so_history_still_replays(wire):
    # given: history written on a provider with vision
    adapter = _TextOnlyAdapter(make_adapter(wire).config)
    history = [
        Message(role="user", content=[TextBlock(text="What is this?"), ImageBlock(data=PNG, media_type="image/png")]),
        Message(role="assistant", content=[TextBlock(text="A pixel.")]),
        Message(role="user", content=[ImageBlock(url="https://example.com/cat.jpg"), TextBlock(text="And this?")]),
    ]

    # when
    await collect(adapter, messages=history)

    # then
    [body] = chat_bodies(wire)
    assert body["messages"] == [
        {"role": "user", "content": "What is this?\n[image (image/png) not shown: this model cannot see images]"},
        {"role": "assistant", "content": "A pixel."},
        {"role": "user", "content": "[image: https://example.com/cat.jpg]\nAnd this?"},
    ]
    assert _TextOnlyAdapter.unsupported_content(history) == ["image"]


def test_image_blocks_take_data_urls_apart_and_refuse_what_no_wire_takes():
    assert ImageBlock(url=f"data:image/jpg;base64,{PNG}") == ImageBlock(data=PNG, media_type="image/jpeg")
    for bad in (
        {"url": "ftp://example.com/a.png"},
        {"data": PNG},
        {"data": "not base64!", "media_type": "image/png"},
        {"data": PNG, "media_type": "image/png", "url": "https://example.com/a.png"},
        {"url": "data:image/png,raw"},
        {"data": PNG, "media_type": "image/tiff"},
    ):
        with pytest.raises(ValueError, match=r"image|media_type"):
            ImageBlock.model_validate(bad)


# --- the fake's validator --------------------------------------------------------------


def test_validator_rejects_what_the_real_api_rejects(wire):
    body = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "t", "arguments": {"a": 1}}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "assistant", "content": "x", "reasoning_content": "leaked"},
            {"role": "function", "content": "legacy"},
        ],
        "tools": [{"type": "function", "function": {"name": "bad name!", "parameters": {"type": "array"}}}],
        "stream_options": {"include_usage": True},
        "thinking": {"type": "enabled"},
    }  # fmt: skip

    problems = wire.validate(body)

    assert problems == [
        "Unrecognized request argument supplied: thinking",
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        "Invalid 'tools[0].function.name': string does not match pattern '^[a-zA-Z0-9_-]{1,64}$'.",
        "Invalid schema for function 'bad name!': schema must be a JSON Schema of 'type: \"object\"'.",
        "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, got dict.",
        "Additional properties are not allowed (['reasoning_content'] unexpected) - 'messages[3]'.",
        "Invalid value for 'messages[4].role': 'function'; expected one of "
        "['assistant', 'developer', 'system', 'tool', 'user'].",
    ]
    assert wire.validate({"model": MODEL, "messages": []}) == ["'messages' must be a non-empty array."]
    assert (
        wire.validate({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
        == []
    )


def test_validator_checks_the_options_tool_choice_and_image_parts(wire):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "other"}},
        "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
        "top_p": 2,
        "seed": "1",
    }

    assert wire.validate(body) == [
        "Invalid 'top_p': expected a number between 0 and 1.",
        "Invalid type for 'seed': expected an integer.",
        "Missing required parameter: 'response_format.json_schema.name'.",
        "Invalid value for 'tool_choice': function 'other' is not among the tools.",
        "Invalid 'messages[0].content[0].image_url.url': expected an http(s) or data: URL.",
    ]
