"""The Anthropic adapter driven through the real SDK against a local server that speaks the Messages API."""

import time
from typing import Any

import pytest

from providers.adapters.anthropic import AnthropicAdapter
from providers.base import ProviderConfig, TokenCount
from providers.errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from providers.schema import tool_schema_for
from providers.types import (
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

from .fakes.anthropic_wire import AnthropicWire, count_tokens_of, signature_for
from .fakes.wire import Fail, ToolCallSpec, Turn

MODEL = "claude-test-1"
WEATHER = ToolSpec(
    name="weather__get_forecast",
    description="Forecast for a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
)


@pytest.fixture(scope="module")
def server():
    wire = AnthropicWire().start()
    yield wire
    wire.stop()


@pytest.fixture
def wire(server: AnthropicWire) -> AnthropicWire:
    server.reset()
    return server


def make_adapter(wire: AnthropicWire, **overrides) -> AnthropicAdapter:
    settings = {
        "name": "anthropic",
        "kind": "anthropic",
        "base_url": wire.url,
        "api_key": "test-key",
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.2,
        **overrides,
    }
    return AnthropicAdapter(ProviderConfig(**settings))


async def collect(adapter: AnthropicAdapter, **kwargs) -> list:
    return [event async for event in adapter.stream(model=MODEL, **kwargs)]


def message_bodies(wire: AnthropicWire) -> list[dict]:
    return [request.json for request in wire.requests_to("/v1/messages")]


def tool_loop_history() -> list[Message]:
    return [
        Message.user("Weather in Paris and Rome?"),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Checking both."),
                ToolCallBlock(id="toolu_01", name="weather__get_forecast", arguments={"city": "Paris"}),
                ToolCallBlock(id="toolu_02", name="weather__get_forecast", arguments={"city": "Rome", "days": 2}),
            ],
        ),
        Message(
            role="tool",
            content=[
                ToolResultBlock(tool_call_id="toolu_01", name="weather__get_forecast", content="Sunny, 24C"),
                ToolResultBlock(tool_call_id="toolu_02", name="weather__get_forecast", content="boom", is_error=True),
            ],
        ),
    ]


# --- text ----------------------------------------------------------------------------


async def test_complete_returns_text_and_sends_options(wire: AnthropicWire):
    # given
    wire.push(Turn(text="Hello there", input_tokens=12, output_tokens=3))
    adapter = make_adapter(wire)

    # when
    completion = await adapter.complete(
        messages=[Message.user("Hi")],
        model=MODEL,
        system="Be brief.",
        options=GenerationOptions(max_tokens=100, temperature=0.5, stop=["END"]),
    )

    # then
    assert completion.message == Message(role="assistant", content=[TextBlock(text="Hello there")])
    assert (completion.stop_reason, completion.raw_reason, completion.model) == ("end", "end_turn", MODEL)
    assert completion.usage == Usage(input_tokens=12, output_tokens=3)
    [request] = wire.requests_to("/v1/messages")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["anthropic-version"]
    assert request.json == {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": "Be brief.",
        # No temperature: the current API (SDK 2.x) has no sampling parameters.
        "stop_sequences": ["END"],
    }


async def test_stream_yields_text_pieces_then_usage_and_finish(wire: AnthropicWire):
    wire.push(Turn(text="Hello, world!", chunk_size=4, input_tokens=8, output_tokens=4))

    events = await collect(make_adapter(wire), messages=[Message.user("Hi")])

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hell", "o, w", "orld", "!"]
    assert events[-2] == UsageEvent(usage=Usage(input_tokens=8, output_tokens=4))
    assert events[-1] == FinishEvent(
        reason="end",
        raw_reason="end_turn",
        message=Message(role="assistant", content=[TextBlock(text="Hello, world!")]),
        usage=Usage(input_tokens=8, output_tokens=4),
        model=MODEL,
    )
    [body] = message_bodies(wire)
    assert body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("stop", "reason", "raw"), [("length", "length", "max_tokens"), ("refused", "refused", "refusal")]
)
async def test_stop_reasons_are_normalised(wire: AnthropicWire, stop: str, reason: str, raw: str):
    wire.push(Turn(text="partial", stop=stop))

    completion = await make_adapter(wire).complete(messages=[Message.user("Hi")], model=MODEL)

    assert (completion.stop_reason, completion.raw_reason) == (reason, raw)


# --- tool calls ----------------------------------------------------------------------


async def test_stream_one_tool_call(wire: AnthropicWire):
    wire.push(Turn(tool_calls=[ToolCallSpec("weather__get_forecast", {"city": "Paris", "days": 3}, id="toolu_01A")]))

    events = await collect(make_adapter(wire), messages=[Message.user("Weather?")], tools=[WEATHER])

    call = ToolCallBlock(id="toolu_01A", name="weather__get_forecast", arguments={"city": "Paris", "days": 3})
    assert [e for e in events if isinstance(e, ToolCallEvent)] == [ToolCallEvent(call=call)]
    finish = events[-1]
    assert (finish.reason, finish.raw_reason) == ("tool_calls", "tool_use")
    assert finish.message == Message(role="assistant", content=[call])
    [body] = message_bodies(wire)
    assert body["tools"] == [
        {
            "name": "weather__get_forecast",
            "description": "Forecast for a city",
            "input_schema": tool_schema_for("json_schema", WEATHER.input_schema),
        }
    ]


async def test_complete_one_tool_call(wire: AnthropicWire):
    wire.push(
        Turn(text="Let me look.", tool_calls=[ToolCallSpec("weather__get_forecast", {"city": "Oslo"}, id="toolu_9")])
    )

    completion = await make_adapter(wire).complete(messages=[Message.user("Weather?")], model=MODEL, tools=[WEATHER])

    assert completion.message.content == [
        TextBlock(text="Let me look."),
        ToolCallBlock(id="toolu_9", name="weather__get_forecast", arguments={"city": "Oslo"}),
    ]
    assert (completion.stop_reason, completion.raw_reason) == ("tool_calls", "tool_use")


async def test_stream_two_parallel_tool_calls(wire: AnthropicWire):
    wire.push(
        Turn(
            text="Both cities:",
            tool_calls=[
                ToolCallSpec("weather__get_forecast", {"city": "Paris"}, id="toolu_A"),
                ToolCallSpec("weather__get_forecast", {"city": "Rome", "days": 2}, id="toolu_B"),
            ],
            chunk_size=3,
        )
    )

    events = await collect(make_adapter(wire), messages=[Message.user("Paris and Rome?")], tools=[WEATHER])

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [
        ToolCallBlock(id="toolu_A", name="weather__get_forecast", arguments={"city": "Paris"}),
        ToolCallBlock(id="toolu_B", name="weather__get_forecast", arguments={"city": "Rome", "days": 2}),
    ]
    finish = events[-1]
    assert finish.reason == "tool_calls"
    assert finish.message.content == [TextBlock(text="Both cities:"), *calls]


async def test_tool_results_go_back_as_a_user_turn_of_tool_result_blocks(wire: AnthropicWire):
    wire.push(Turn(text="Paris is sunny; Rome failed."))
    history = [*tool_loop_history(), Message.user("Thanks!")]

    completion = await make_adapter(wire).complete(messages=history, model=MODEL, tools=[WEATHER])

    assert completion.message.text == "Paris is sunny; Rome failed."
    [body] = message_bodies(wire)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01", "name": "weather__get_forecast", "input": {"city": "Paris"}},
                {
                    "type": "tool_use",
                    "id": "toolu_02",
                    "name": "weather__get_forecast",
                    "input": {"city": "Rome", "days": 2},
                },
            ],
        },
        {
            # The tool turn and the user's next words merge: the wire wants strict alternation.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 24C"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "boom", "is_error": True},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    assert wire.validate(body) == []


async def test_invalid_history_is_rejected_with_the_servers_message(wire: AnthropicWire):
    # given: a tool result that answers no call
    wire.push(Turn(text="never sent"))
    history = [
        Message.user("Hi"),
        Message(role="assistant", content=[TextBlock(text="Hello")]),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="toolu_ghost", content="?")]),
    ]

    # when
    with pytest.raises(ProviderBadRequest) as caught:
        await make_adapter(wire).complete(messages=history, model=MODEL)

    # then
    [body] = message_bodies(wire)
    assert caught.value.status == 400
    assert caught.value.message == (
        "messages.2.content: unexpected `tool_use_id` found in `tool_result` blocks: toolu_ghost. Each "
        "`tool_result` block must have a corresponding `tool_use` block in the previous message."
    )
    assert wire.validate(body) == [caught.value.message]
    assert len(wire.script) == 1  # the scripted reply was not consumed


# --- usage ---------------------------------------------------------------------------


async def test_usage_counts_cached_input_and_thinking_output(wire: AnthropicWire):
    expected = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=120)
    turn: dict[str, Any] = {
        "text": "ok",
        "input_tokens": 1200,
        "cached_tokens": 1000,
        "output_tokens": 300,
        "reasoning_tokens": 120,
    }
    wire.push(Turn(**turn), Turn(**turn))
    adapter = make_adapter(wire)

    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    events = await collect(adapter, messages=[Message.user("Hi")])

    assert completion.usage == expected
    assert [e.usage for e in events if isinstance(e, UsageEvent)] == [expected]
    assert events[-1].usage == expected


def test_usage_adds_cache_writes_to_input():
    from providers.adapters.anthropic import _usage

    wire_usage = {
        "input_tokens": 7,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 40,
        "output_tokens": 9,
    }

    assert _usage(wire_usage) == Usage(input_tokens=547, output_tokens=9, cache_read_tokens=40, cache_write_tokens=500)


# --- errors and retries --------------------------------------------------------------


async def test_rate_limit_waits_for_retry_after_then_succeeds(wire: AnthropicWire):
    wire.push(Fail(429, "Number of requests has exceeded your rate limit", retry_after=0.3), Turn(text="finally"))
    adapter = make_adapter(wire, retry_max_delay=1.0)

    started = time.perf_counter()
    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    elapsed = time.perf_counter() - started

    assert completion.message.text == "finally"
    assert len(wire.requests_to("/v1/messages")) == 2
    assert elapsed >= 0.3


async def test_persistent_server_error_is_unavailable_after_all_retries(wire: AnthropicWire):
    wire.push(*[Fail(500, "Internal server error")] * 3, Turn(text="too late"))

    with pytest.raises(ProviderUnavailable) as caught:
        await collect(make_adapter(wire, max_retries=2), messages=[Message.user("Hi")])

    assert len(wire.requests_to("/v1/messages")) == 3
    assert (caught.value.status, caught.value.message, caught.value.provider) == (
        500,
        "Internal server error",
        "anthropic",
    )


async def test_overloaded_529_is_unavailable(wire: AnthropicWire):
    wire.push(Fail(529, "Overloaded"))

    with pytest.raises(ProviderUnavailable) as caught:
        await make_adapter(wire, max_retries=0).complete(messages=[Message.user("Hi")], model=MODEL)

    assert (caught.value.status, caught.value.message) == (529, "Overloaded")


async def test_authentication_error_is_not_retried(wire: AnthropicWire):
    wire.push(Fail(401, "invalid x-api-key"), Turn(text="unused"))

    with pytest.raises(ProviderAuthenticationError) as caught:
        await make_adapter(wire).complete(messages=[Message.user("Hi")], model=MODEL)

    assert (caught.value.status, caught.value.message) == (401, "invalid x-api-key")
    assert len(wire.requests) == 1


async def test_unreachable_server_is_unavailable():
    adapter = AnthropicAdapter(
        ProviderConfig(name="anthropic", kind="anthropic", base_url="http://127.0.0.1:9", api_key="k", max_retries=0)
    )

    with pytest.raises(ProviderUnavailable):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)


# --- models, health, configuration ---------------------------------------------------


async def test_list_models(wire: AnthropicWire):
    models = await make_adapter(wire).list_models()

    assert models == [
        ModelInfo(id="claude-sonnet-4-6", display_name="Claude Sonnet 4.6", context_window=1000000),
        ModelInfo(id="claude-sonnet-4-5", display_name="Claude Sonnet 4.5", context_window=200000),
        ModelInfo(id="claude-haiku-4-5", display_name="Claude Haiku 4.5", context_window=200000),
    ]
    [request] = wire.requests_to("/v1/models")
    assert request.method == "GET"


async def test_list_models_follows_pages(wire: AnthropicWire):
    wire.models = [
        {"type": "model", "id": f"claude-{n}", "display_name": f"Claude {n}", "created_at": "2025-01-01T00:00:00Z"}
        for n in range(25)
    ]

    models = await make_adapter(wire).list_models()

    assert [m.id for m in models] == [f"claude-{n}" for n in range(25)]
    assert [r.query.get("after_id") for r in wire.requests_to("/v1/models")] == [None, ["claude-19"]]


async def test_health_ok(wire: AnthropicWire):
    result = await make_adapter(wire).health()

    assert result.status == "ok"
    assert result.latency_ms is not None


async def test_health_reports_authentication_failure(wire: AnthropicWire):
    wire.push(Fail(401, "invalid x-api-key"))

    result = await make_adapter(wire).health()

    assert (result.status, result.code, result.error) == (
        "error",
        "provider_authentication_failed",
        "invalid x-api-key",
    )


async def test_missing_api_key_fails_before_any_request(wire: AnthropicWire):
    adapter = make_adapter(wire, api_key=None)

    with pytest.raises(ProviderNotConfigured):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderNotConfigured):
        await collect(adapter, messages=[Message.user("Hi")])
    with pytest.raises(ProviderNotConfigured):
        await adapter.list_models()
    assert (await adapter.health()).code == "provider_not_configured"
    assert wire.requests == []


# --- count_tokens --------------------------------------------------------------------


async def test_count_tokens_is_anthropics_own_count_of_the_prompt(wire: AnthropicWire):
    # when
    count = await make_adapter(wire).count_tokens(
        messages=[Message.user("What is the weather in Rome?")], model=MODEL, tools=[WEATHER], system="Be brief."
    )

    # then: the fake counts words: 6 in the message, 2 in the system, 5 in the tool's name and description
    assert count == TokenCount(input_tokens=13, estimated=False)
    [request] = wire.requests
    assert (request.method, request.path) == ("POST", "/v1/messages/count_tokens")
    assert request.json == {
        "model": MODEL,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Rome?"}]}],
        "tools": [
            {
                "name": "weather__get_forecast",
                "description": "Forecast for a city",
                "input_schema": tool_schema_for("json_schema", WEATHER.input_schema),
            }
        ],
    }


async def test_count_tokens_sends_the_conversation_as_a_request_would(wire: AnthropicWire):
    # given
    wire.push(Turn(text="Paris is sunny."))
    adapter = make_adapter(wire)
    await adapter.complete(messages=tool_loop_history(), model=MODEL, tools=[WEATHER])

    # when
    count = await adapter.count_tokens(messages=tool_loop_history(), model=MODEL, tools=[WEATHER])

    # then
    sent, counted = (request.json for request in wire.requests)
    assert counted == {key: sent[key] for key in ("model", "messages", "tools")}
    assert count == TokenCount(input_tokens=count_tokens_of(counted), estimated=False)
    assert len(wire.script) == 0  # counting consumed no scripted reply and made no message


async def test_count_tokens_retries_a_rate_limit_then_counts(wire: AnthropicWire):
    wire.push(Fail(429, "Number of requests has exceeded your rate limit", retry_after=0.05))

    count = await make_adapter(wire).count_tokens(messages=[Message.user("one two three")], model=MODEL)

    assert count == TokenCount(input_tokens=3, estimated=False)
    assert len(wire.requests_to("/v1/messages/count_tokens")) == 2


async def test_count_tokens_errors_map_like_any_call(wire: AnthropicWire):
    ghost_result = [
        Message.user("Hi"),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="toolu_ghost", content="?")]),
    ]

    with pytest.raises(ProviderBadRequest) as bad:
        await make_adapter(wire).count_tokens(messages=ghost_result, model=MODEL)
    wire.push(Fail(401, "invalid x-api-key"))
    with pytest.raises(ProviderAuthenticationError) as refused:
        await make_adapter(wire).count_tokens(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderNotConfigured):
        await make_adapter(wire, api_key=None).count_tokens(messages=[Message.user("Hi")], model=MODEL)

    assert bad.value.status == 400
    assert "unexpected `tool_use_id` found in `tool_result` blocks: toolu_ghost" in bad.value.message
    assert (refused.value.status, refused.value.message) == (401, "invalid x-api-key")
    assert len(wire.requests) == 2  # none without a key


# --- thinking ------------------------------------------------------------------------


async def test_thinking_streams_and_replays_its_signature(wire: AnthropicWire):
    # given: a thinking reply that calls a tool
    thought = "The user wants Paris weather."
    wire.push(
        Turn(thinking=thought, tool_calls=[ToolCallSpec("weather__get_forecast", {"city": "Paris"}, id="toolu_T")]),
        Turn(text="Sunny."),
    )
    adapter = make_adapter(wire)
    options = GenerationOptions(thinking_budget=2048)

    # when
    events = await collect(adapter, messages=[Message.user("Paris?")], tools=[WEATHER], options=options)

    # then
    deltas = [e for e in events if isinstance(e, ThinkingDelta)]
    assert [e.text for e in deltas if e.signature is None] == [
        "The ",
        "user",
        " wan",
        "ts P",
        "aris",
        " wea",
        "ther",
        ".",
    ]
    assert [e.signature for e in deltas if e.signature is not None] == [signature_for(thought)]  # as the block ends
    assert deltas[-1].signature is not None
    thinking_block = ThinkingBlock(text=thought, signature=signature_for(thought), origin="anthropic")
    call = ToolCallBlock(id="toolu_T", name="weather__get_forecast", arguments={"city": "Paris"})
    assistant = events[-1].message
    assert assistant.content == [thinking_block, call]
    first = message_bodies(wire)[0]
    assert (first["thinking"], first["max_tokens"]) == ({"type": "enabled", "budget_tokens": 2048}, 2048 + 4096)

    # when: the tool loop continues on the same provider
    result = Message(role="tool", content=[ToolResultBlock(tool_call_id="toolu_T", content="Sunny")])
    await collect(adapter, messages=[Message.user("Paris?"), assistant, result], tools=[WEATHER], options=options)

    # then: the thinking goes back unchanged, ahead of the tool call
    second = message_bodies(wire)[1]
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": thought, "signature": signature_for(thought)},
            {"type": "tool_use", "id": "toolu_T", "name": "weather__get_forecast", "input": {"city": "Paris"}},
        ],
    }
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert wire.validate(second) == []


async def test_other_providers_thinking_and_opaque_data_are_not_sent(wire: AnthropicWire):
    # given: a tool turn made by Gemini, with its signatures and an id this wire would reject
    history = [
        Message.user("Paris?"),
        Message(
            role="assistant",
            content=[
                ThinkingBlock(text="gemini thoughts", origin="gemini", opaque={"thought_signature": "g-sig"}),
                TextBlock(text="Looking it up.", origin="gemini", opaque={"thought_signature": "g-sig-2"}),
                ToolCallBlock(
                    id="call:7.x",
                    name="weather__get_forecast",
                    arguments={"city": "Paris"},
                    origin="gemini",
                    opaque={"thought_signature": "g-sig-3"},
                ),
            ],
        ),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call:7.x", content="Sunny")]),
    ]
    wire.push(Turn(text="Sunny in Paris."))

    # when: continued here with thinking requested
    completion = await make_adapter(wire).complete(
        messages=history, model=MODEL, tools=[WEATHER], options=GenerationOptions(thinking_budget=2048)
    )

    # then
    assert completion.message.text == "Sunny in Paris."
    [body] = message_bodies(wire)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking it up."},
                {"type": "tool_use", "id": "call_7_x", "name": "weather__get_forecast", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_7_x", "content": "Sunny"}]},
    ]
    # The turn being continued has no signed thinking, so thinking stays off for this request.
    assert "thinking" not in body
    assert wire.validate(body) == []


# --- generation options and images ---------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_options_reach_the_wire_in_anthropic_terms(wire: AnthropicWire):
    # given
    options = GenerationOptions(
        max_tokens=200,
        stop=["END"],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}},
        tool_choice=ToolChoice(mode="tool", name=WEATHER.name),
    )

    # when
    await make_adapter(wire).complete(messages=[Message.user("Paris?")], model=MODEL, tools=[WEATHER], options=options)

    # then
    [body] = message_bodies(wire)
    assert {key: body[key] for key in ("max_tokens", "stop_sequences", "tool_choice", "output_config")} == {
        "max_tokens": 200,
        "stop_sequences": ["END"],
        "tool_choice": {"type": "tool", "name": WEATHER.name},
        "output_config": {"format": {"type": "json_schema", "schema": CITY_SCHEMA}},
    }
    assert AnthropicAdapter.unsupported_options(options) == []


@pytest.mark.parametrize(("mode", "wire_type"), [("auto", "auto"), ("none", "none"), ("required", "any")])
async def test_tool_choice_modes_become_anthropic_types(wire: AnthropicWire, mode: str, wire_type: str):
    options = GenerationOptions(tool_choice=ToolChoice.model_validate({"mode": mode}))

    await collect(make_adapter(wire), messages=[Message.user("Paris?")], tools=[WEATHER], options=options)

    [body] = message_bodies(wire)
    assert body["tool_choice"] == {"type": wire_type}


@pytest.mark.parametrize(
    ("options", "unsupported"),
    [
        (GenerationOptions(temperature=1, top_p=1.0, stop=["x"]), []),
        (GenerationOptions(temperature=0.2, top_p=0.9, seed=3), ["temperature", "top_p", "seed"]),
        (GenerationOptions(response_format={"type": "json_object"}), ["response_format"]),
        (GenerationOptions(response_format={"type": "text"}), []),
        (GenerationOptions(thinking_budget=2048, tool_choice=ToolChoice(mode="required")), ["tool_choice"]),
        (GenerationOptions(thinking_budget=2048, tool_choice=ToolChoice(mode="none")), []),
    ],
)
def test_unsupported_options_are_named_before_any_call(options: GenerationOptions, unsupported: list[str]):
    assert AnthropicAdapter.unsupported_options(options) == unsupported


async def test_unsupported_options_given_anyway_are_left_out(wire: AnthropicWire):
    options = GenerationOptions(temperature=0.2, top_p=0.5, seed=3, response_format={"type": "json_object"})

    await collect(make_adapter(wire), messages=[Message.user("Hi")], options=options)

    [body] = message_bodies(wire)
    assert set(body) == {"model", "messages", "max_tokens", "stream"}


async def test_images_go_as_base64_and_url_image_blocks(wire: AnthropicWire):
    # given: a tool loop whose results come back with the user's next image
    history = [
        *tool_loop_history(),
        Message(
            role="user",
            content=[ImageBlock(data=PNG, media_type="image/png"), ImageBlock(url="https://example.com/cat.jpg")],
        ),
    ]

    # when
    await collect(make_adapter(wire), messages=history, tools=[WEATHER])

    # then: one user turn, tool results first, then the images in order
    [body] = message_bodies(wire)
    assert body["messages"][-1]["content"][2:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    assert [block["type"] for block in body["messages"][-1]["content"]] == [
        "tool_result",
        "tool_result",
        "image",
        "image",
    ]
    assert AnthropicAdapter.unsupported_content(history) == []


# --- the fake's validator ------------------------------------------------------------


def _body(messages: list[dict], **extra) -> dict:
    return {"model": MODEL, "max_tokens": 4096, "messages": messages, **extra}


USER = {"role": "user", "content": "Hi"}
WEATHER_WIRE = {"name": "weather__get_forecast", "input_schema": {"type": "object"}}
CALL: dict[str, Any] = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}],
}
RESULT: dict[str, Any] = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}],
}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": MODEL, "messages": [USER]}, "max_tokens: Field required"),
        (_body([]), "at least one message"),
        (_body([{"role": "assistant", "content": "Hi"}]), "first message must use the 'user' role"),
        (_body([USER, USER]), "roles must alternate"),
        (_body([USER, CALL]), "without `tool_result` blocks immediately after"),
        (_body([USER, CALL, USER]), "without `tool_result` blocks immediately after"),
        (
            _body([USER, CALL, {"role": "user", "content": [{"type": "text", "text": "x"}, *RESULT["content"]]}]),
            "must come first",
        ),
        (
            _body([USER, {"role": "assistant", "content": [{**CALL["content"][0], "id": "bad id"}]}, RESULT]),
            "String should match pattern",
        ),
        (
            _body([USER, {"role": "assistant", "content": [{**CALL["content"][0], "input": "{}"}]}, RESULT]),
            "input: Input should be a valid dictionary",
        ),
        (
            _body([USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}, *CALL["content"]]}]),
            "signature: Field required",
        ),
        (
            _body([USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "x"}]}]),
            "Invalid `signature`",
        ),
        (_body([USER], tools=[{"name": "bad name", "input_schema": {"type": "object"}}]), "tools.0.name"),
        (_body([USER], tools=[{"name": "t", "input_schema": {"type": "array"}}]), "input_schema.type"),
        (_body([USER], system=[{"type": "image"}]), "system:"),
        (_body([USER], temperature=1.5), "temperature"),
        (_body([USER], thinking={"type": "enabled", "budget_tokens": 512}), "greater than or equal to 1024"),
        (_body([USER], thinking={"type": "enabled", "budget_tokens": 4096}), "must be greater than"),
        (
            _body([USER, CALL, RESULT], thinking={"type": "enabled", "budget_tokens": 1024}),
            "must start with a thinking",
        ),
        (_body([{"role": "user", "content": [{"type": "text", "text": "x", "origin": "gemini"}]}]), "Extra inputs"),
        (_body([USER], tool_choice={"type": "required"}), "tool_choice.type"),
        (_body([USER], tools=[WEATHER_WIRE], tool_choice={"type": "tool", "name": "other"}), "not one of the tools"),
        (
            _body(
                [USER],
                tools=[WEATHER_WIRE],
                tool_choice={"type": "any"},
                thinking={"type": "enabled", "budget_tokens": 1024},
                max_tokens=2048,
            ),
            "forces tool use",
        ),
        (_body([USER], output_config={"format": {"type": "json_object"}}), "output_config.format"),
        (
            _body([{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "file:///x"}}]}]),
            "http(s) url",
        ),
        (
            _body(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "AA=="}}
                        ],
                    }
                ]
            ),
            "media_type",
        ),
    ],
)
def test_validator_rejects_what_the_api_rejects(server: AnthropicWire, body: dict, fragment: str):
    problems = server.validate(body)

    assert any(fragment in problem for problem in problems), problems


def test_validator_accepts_a_complete_tool_loop(server: AnthropicWire):
    assert server.validate(_body([USER, CALL, RESULT], system="Be brief.", temperature=0.2)) == []
