"""The Gemini adapter driven through the real google-genai SDK against a local Gemini wire server."""

import base64
import re
import time

import pytest

from providers.adapters.gemini import GeminiAdapter
from providers.base import ProviderConfig, TokenCount
from providers.errors import (
    ProviderAuthenticationError,
    ProviderBadRequest,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from providers.types import (
    FinishEvent,
    GenerationOptions,
    HealthResult,
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
from tests.fakes.gemini_wire import GeminiWire, count_tokens_of, thought_signature
from tests.fakes.wire import Fail, ToolCallSpec, Turn

MODEL = "gemini-2.5-flash"
GENERATED_ID = re.compile(r"^call_[0-9a-f]{24}$")
CLOCK = ToolSpec(
    name="clock__now",
    description="Current time in a time zone.",
    input_schema={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
)
CLOCK_WIRE = {
    "name": "clock__now",
    "description": "Current time in a time zone.",
    "parameters": {"type": "OBJECT", "properties": {"tz": {"type": "STRING"}}, "required": ["tz"]},
}

FOREIGN_SIGNATURE_B64 = base64.b64encode(b"skip_thought_signature_validator").decode()


@pytest.fixture(scope="module")
def server():
    wire = GeminiWire().start()
    yield wire
    wire.stop()


@pytest.fixture
def wire(server):
    server.reset()
    return server


def make_adapter(base_url: str, **overrides) -> GeminiAdapter:
    settings = {
        "name": "gemini",
        "kind": "gemini",
        "base_url": base_url,
        "api_key": "test-key",
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.2,
        **overrides,
    }
    return GeminiAdapter(ProviderConfig(**settings))


@pytest.fixture
def adapter(wire) -> GeminiAdapter:
    return make_adapter(wire.url)


async def collect(adapter: GeminiAdapter, **kwargs) -> list:
    return [event async for event in adapter.stream(model=MODEL, **kwargs)]


def last_body(wire: GeminiWire) -> dict:
    return wire.requests[-1].json


# --- text ---------------------------------------------------------------------------------


async def test_complete_returns_plain_text_and_sends_system_and_options(wire, adapter):
    # given
    wire.push(Turn(text="Hello there", input_tokens=12, output_tokens=3))

    # when
    completion = await adapter.complete(
        messages=[Message.user("Hi")],
        model=MODEL,
        system="Be brief.",
        options=GenerationOptions(max_tokens=100, temperature=0.5, stop=["END"]),
    )

    # then
    assert completion.message == Message(role="assistant", content=[TextBlock(text="Hello there")])
    assert completion.stop_reason == "end"
    assert completion.raw_reason == "STOP"
    assert completion.usage == Usage(input_tokens=12, output_tokens=3)
    assert completion.model == MODEL
    [request] = wire.requests
    assert request.path == f"/v1/models/{MODEL}:generateContent"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert request.json == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
    }


async def test_stream_yields_text_pieces_usage_and_the_assembled_message(wire, adapter):
    wire.push(Turn(text="Hello streaming world", chunk_size=5, input_tokens=7, output_tokens=4))

    events = await collect(adapter, messages=[Message.user("Hi")])

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " stre", "aming", " worl", "d"]
    assert [e for e in events if isinstance(e, UsageEvent)] == [
        UsageEvent(usage=Usage(input_tokens=7, output_tokens=4))
    ]
    assert events[-1] == FinishEvent(
        reason="end",
        raw_reason="STOP",
        message=Message(role="assistant", content=[TextBlock(text="Hello streaming world")]),
        usage=Usage(input_tokens=7, output_tokens=4),
        model=MODEL,
    )
    [request] = wire.requests
    assert request.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert request.query == {"alt": ["sse"]}
    assert "tools" not in request.json


@pytest.mark.parametrize(
    ("stop", "reason", "raw"),
    [
        ("length", "length", "MAX_TOKENS"),
        ("refused", "refused", "SAFETY"),
        ("RECITATION", "refused", "RECITATION"),
        ("MALFORMED_FUNCTION_CALL", "end", "MALFORMED_FUNCTION_CALL"),
    ],
)
async def test_finish_reasons_are_normalised_and_the_raw_one_kept(wire, adapter, stop, reason, raw):
    wire.push(Turn(text="partial", stop=stop))

    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert (completion.stop_reason, completion.raw_reason) == (reason, raw)
    assert completion.message.text == "partial"


# --- tool calls ---------------------------------------------------------------------------


async def test_stream_one_tool_call_with_the_wire_id(wire, adapter):
    wire.push(Turn(tool_calls=[ToolCallSpec("clock__now", {"tz": "UTC"}, id="fc-1")]))

    events = await collect(adapter, messages=[Message.user("What time is it?")], tools=[CLOCK])

    call = ToolCallBlock(id="fc-1", name="clock__now", arguments={"tz": "UTC"})
    assert [e for e in events if isinstance(e, ToolCallEvent)] == [ToolCallEvent(call=call)]
    finish = events[-1]
    assert (finish.reason, finish.raw_reason) == ("tool_calls", "STOP")
    assert finish.message == Message(role="assistant", content=[call])
    assert last_body(wire)["tools"] == [{"functionDeclarations": [CLOCK_WIRE]}]


async def test_complete_one_tool_call_without_wire_id_gets_a_generated_id(wire, adapter):
    wire.push(Turn(text="Checking.", tool_calls=[ToolCallSpec("clock__now", {"tz": "Europe/Paris"})]))

    completion = await adapter.complete(messages=[Message.user("Time in Paris?")], model=MODEL, tools=[CLOCK])

    text, call = completion.message.content
    assert text == TextBlock(text="Checking.")
    assert isinstance(call, ToolCallBlock)
    assert GENERATED_ID.match(call.id)
    assert (call.name, call.arguments, call.invalid_arguments) == ("clock__now", {"tz": "Europe/Paris"}, None)
    assert completion.stop_reason == "tool_calls"
    assert completion.raw_reason == "STOP"
    assert last_body(wire) == {
        "contents": [{"role": "user", "parts": [{"text": "Time in Paris?"}]}],
        "tools": [{"functionDeclarations": [CLOCK_WIRE]}],
        "generationConfig": {},
    }


async def test_stream_two_parallel_tool_calls(wire, adapter):
    wire.push(
        Turn(
            tool_calls=[
                ToolCallSpec("clock__now", {"tz": "UTC"}, id="fc-1"),
                ToolCallSpec("clock__now", {"tz": "Asia/Tokyo"}),
            ]
        )
    )

    events = await collect(adapter, messages=[Message.user("UTC and Tokyo?")], tools=[CLOCK])

    first, second = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert first == ToolCallBlock(id="fc-1", name="clock__now", arguments={"tz": "UTC"})
    assert GENERATED_ID.match(second.id)
    assert (second.name, second.arguments) == ("clock__now", {"tz": "Asia/Tokyo"})
    assert events[-1].reason == "tool_calls"
    assert events[-1].message.tool_calls == [first, second]


async def test_tool_results_go_back_as_one_user_turn_of_function_responses(wire, adapter):
    # given: two parallel calls, answered in two tool messages (one failed)
    history = [
        Message.user("UTC and Tokyo?"),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Let me check."),
                ToolCallBlock(id="call_1", name="clock__now", arguments={"tz": "UTC"}),
                ToolCallBlock(id="call_2", name="clock__now", arguments={"tz": "Asia/Tokyo"}),
            ],
        ),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_1", name="clock__now", content="12:00")]),
        Message(
            role="tool",
            content=[ToolResultBlock(tool_call_id="call_2", name="clock__now", content="unknown zone", is_error=True)],
        ),
    ]
    wire.push(Turn(text="It is noon in UTC."))

    # when
    completion = await adapter.complete(messages=history, model=MODEL, tools=[CLOCK])

    # then
    assert completion.message.text == "It is noon in UTC."
    body = last_body(wire)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "UTC and Tokyo?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {
                    "functionCall": {"id": "call_1", "name": "clock__now", "args": {"tz": "UTC"}},
                    # calls Gemini did not make carry Google's documented placeholder signature
                    "thoughtSignature": FOREIGN_SIGNATURE_B64,
                },
                {"functionCall": {"id": "call_2", "name": "clock__now", "args": {"tz": "Asia/Tokyo"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "call_1", "name": "clock__now", "response": {"result": "12:00"}}},
                {"functionResponse": {"id": "call_2", "name": "clock__now", "response": {"error": "unknown zone"}}},
            ],
        },
    ]
    assert wire.validate(body) == []


async def test_a_tool_without_arguments_declares_no_parameters(wire, adapter):
    ping = ToolSpec(name="health__ping", description="Ping.", input_schema={"type": "object", "properties": {}})
    wire.push(Turn(text="pong"))

    await adapter.complete(messages=[Message.user("ping")], model=MODEL, tools=[ping])

    assert last_body(wire)["tools"] == [{"functionDeclarations": [{"name": "health__ping", "description": "Ping."}]}]


# --- usage --------------------------------------------------------------------------------


async def test_usage_counts_cached_input_and_thoughts_as_output(wire, adapter):
    wire.push(Turn(text="ok", input_tokens=100, output_tokens=40, cached_tokens=30, reasoning_tokens=15))

    events = await collect(adapter, messages=[Message.user("Hi")])

    expected = Usage(input_tokens=100, output_tokens=40, cache_read_tokens=30, reasoning_tokens=15)
    assert [e.usage for e in events if isinstance(e, UsageEvent)] == [expected]
    assert events[-1].usage == expected


# --- errors and retries -------------------------------------------------------------------


async def test_rate_limit_honours_retry_after_then_succeeds(wire):
    # The base class caps Retry-After at retry_max_delay, so the cap must sit above the 0.3 s asked for.
    adapter = make_adapter(wire.url, retry_max_delay=1.0)
    wire.push(Fail(429, "Resource has been exhausted (e.g. check quota).", retry_after=0.3), Turn(text="ok"))

    started = time.perf_counter()
    completion = await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    elapsed = time.perf_counter() - started

    assert completion.message.text == "ok"
    assert len(wire.requests) == 2
    assert elapsed >= 0.3


async def test_stream_retries_a_rate_limit_before_the_first_event(wire, adapter):
    wire.push(Fail(429, "slow down", retry_after=0.05), Turn(text="ok"))

    events = await collect(adapter, messages=[Message.user("Hi")])

    assert events[-1].message.text == "ok"
    assert len(wire.requests) == 2


async def test_rate_limit_error_carries_retry_after_from_the_body_when_no_header(wire):
    adapter = make_adapter(wire.url, max_retries=0)
    wire.push(Fail(429, "quota", retry_after=7))

    with pytest.raises(ProviderRateLimited) as raised:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert (raised.value.status, raised.value.retry_after, raised.value.message) == (429, 7.0, "quota")


async def test_persistent_server_error_gives_unavailable_after_all_retries(wire):
    adapter = make_adapter(wire.url, max_retries=2)
    wire.push(Fail(500, "Internal error encountered."), Fail(500, "Internal error encountered."), Fail(500, "again"))

    with pytest.raises(ProviderUnavailable) as raised:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert len(wire.requests) == 3
    assert raised.value.status == 500
    assert raised.value.message == "again"
    assert raised.value.provider == "gemini"


async def test_authentication_error_is_not_retried(wire, adapter):
    wire.push(Fail(401, "API key not valid. Please pass a valid API key."))

    with pytest.raises(ProviderAuthenticationError) as raised:
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)

    assert len(wire.requests) == 1
    assert raised.value.status == 401
    assert raised.value.message == "API key not valid. Please pass a valid API key."


async def test_invalid_history_is_rejected_by_the_wire_as_bad_request(wire, adapter):
    # given: a tool result answering a call that was never made
    history = [
        Message.user("Hi"),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_x", name="clock__now", content="12:00")]),
    ]
    wire.push(Turn(text="never sent"))

    # when
    with pytest.raises(ProviderBadRequest) as raised:
        await adapter.complete(messages=history, model=MODEL)

    # then
    assert raised.value.status == 400
    assert raised.value.message == (
        "* GenerateContentRequest.contents[0]: a function response turn must come immediately after a model turn "
        "with function calls."
    )
    assert len(wire.requests) == 1
    assert list(wire.script) == [Turn(text="never sent")]  # the scripted reply was not consumed


async def test_unreachable_server_is_unavailable():
    adapter = make_adapter("http://127.0.0.1:9", max_retries=1)

    with pytest.raises(ProviderUnavailable):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)


# --- models, health, configuration --------------------------------------------------------


async def test_list_models_keeps_chat_models_across_pages(wire, adapter):
    wire.page_size_cap = 1

    models = await adapter.list_models()

    assert models == [
        ModelInfo(id="gemini-2.5-flash", display_name="Gemini 2.5 Flash", context_window=1048576),
        ModelInfo(id="gemini-2.5-pro", display_name="Gemini 2.5 Pro", context_window=1048576),
    ]
    assert [r.query.get("pageToken") for r in wire.requests] == [None, ["1"], ["2"]]
    assert all(r.path == "/v1/models" for r in wire.requests)


async def test_health_ok(wire, adapter):
    result = await adapter.health()

    assert result.status == "ok"
    assert result.error is None
    assert len(wire.requests) == 1


async def test_health_reports_an_authentication_failure(wire, adapter):
    wire.push(Fail(401, "API key not valid. Please pass a valid API key."))

    result = await adapter.health()

    assert result.status == "error"
    assert result.code == "provider_authentication_failed"
    assert result.error == "API key not valid. Please pass a valid API key."


async def test_missing_api_key_raises_not_configured_without_a_request(wire):
    adapter = make_adapter(wire.url, api_key=None)

    with pytest.raises(ProviderNotConfigured):
        await adapter.complete(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderNotConfigured):
        await collect(adapter, messages=[Message.user("Hi")])
    with pytest.raises(ProviderNotConfigured):
        await adapter.list_models()
    health = await adapter.health()

    assert health == HealthResult(
        status="error", error="Not configured: no API key in the environment.", code="provider_not_configured"
    )
    assert wire.requests == []


# --- count_tokens -------------------------------------------------------------------------

TOKYO = [{"role": "user", "parts": [{"text": "What time is it in Tokyo?"}]}]


async def test_count_tokens_is_geminis_own_count_of_the_contents(wire, adapter):
    count = await adapter.count_tokens(messages=[Message.user("What time is it in Tokyo?")], model=MODEL)

    assert count == TokenCount(input_tokens=6, estimated=False)  # the fake counts words
    [request] = wire.requests
    assert (request.method, request.path) == ("POST", f"/v1/models/{MODEL}:countTokens")
    assert request.json == {"contents": TOKYO}


async def test_count_tokens_counts_system_and_tools_in_a_generate_content_request(wire, adapter):
    # when
    count = await adapter.count_tokens(
        messages=[Message.user("What time is it in Tokyo?")], model=MODEL, tools=[CLOCK], system="Be brief."
    )

    # then: 6 words of contents, 2 of system, 8 of the declaration (name, description, required)
    assert count == TokenCount(input_tokens=16, estimated=False)
    body = wire.requests[-1].json
    assert body == {
        "contents": TOKYO,
        "generateContentRequest": {
            "model": f"models/{MODEL}",
            "contents": TOKYO,
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "tools": [{"functionDeclarations": [CLOCK_WIRE]}],
        },
    }
    assert wire.validate_count(body, MODEL) == []


async def test_count_tokens_sends_the_conversation_as_a_request_would(wire, adapter):
    # given: a tool loop begun on another provider, sent for real first
    history = [
        Message.user("UTC?"),
        Message(role="assistant", content=[ToolCallBlock(id="call_1", name="clock__now", arguments={"tz": "UTC"})]),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_1", name="clock__now", content="12:00")]),
    ]
    wire.push(Turn(text="Noon."))
    await adapter.complete(messages=history, model=MODEL, tools=[CLOCK], system="Be brief.")

    # when
    count = await adapter.count_tokens(messages=history, model=MODEL, tools=[CLOCK], system="Be brief.")

    # then
    sent, counted = (request.json for request in wire.requests)
    full = counted["generateContentRequest"]
    assert full["contents"] == sent["contents"]
    assert full["tools"] == sent["tools"]
    assert full["systemInstruction"]["parts"] == sent["systemInstruction"]["parts"]
    assert count == TokenCount(input_tokens=count_tokens_of(counted), estimated=False)


async def test_count_tokens_retries_a_rate_limit_then_counts(wire, adapter):
    wire.push(Fail(429, "Resource has been exhausted (e.g. check quota).", retry_after=0.05))

    count = await adapter.count_tokens(messages=[Message.user("one two three")], model=MODEL)

    assert count == TokenCount(input_tokens=3, estimated=False)
    assert len(wire.requests_to(":countTokens")) == 2


async def test_count_tokens_errors_map_like_any_call(wire, adapter):
    orphan = [
        Message.user("Hi"),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="call_x", name="clock__now", content="12:00")]),
    ]

    with pytest.raises(ProviderBadRequest) as bad:
        await adapter.count_tokens(messages=orphan, model=MODEL)
    with pytest.raises(ProviderBadRequest) as empty:
        await adapter.count_tokens(messages=[Message.user("")], model=MODEL)
    wire.push(Fail(401, "API key not valid. Please pass a valid API key."))
    with pytest.raises(ProviderAuthenticationError) as refused:
        await adapter.count_tokens(messages=[Message.user("Hi")], model=MODEL)
    with pytest.raises(ProviderNotConfigured):
        await make_adapter(wire.url, api_key=None).count_tokens(messages=[Message.user("Hi")], model=MODEL)

    assert bad.value.status == 400
    assert "a function response turn must come immediately after a model turn" in bad.value.message
    assert empty.value.message == "Nothing to count: the messages hold no content."
    assert (refused.value.status, refused.value.message) == (401, "API key not valid. Please pass a valid API key.")
    assert len(wire.requests) == 2  # neither the empty prompt nor the keyless adapter made a request


# --- thinking and thought signatures ------------------------------------------------------


async def test_stream_thinking_yields_deltas_and_a_signed_thinking_block(wire, adapter):
    wire.push(Turn(thinking="Let me think.", text="Answer", chunk_size=4, output_tokens=9, reasoning_tokens=6))

    events = await collect(adapter, messages=[Message.user("Q?")], options=GenerationOptions(thinking_budget=512))

    assert [e.text for e in events if isinstance(e, ThinkingDelta)] == ["Let ", "me t", "hink", "."]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Answ", "er"]
    assert events[-1].message == Message(
        role="assistant",
        content=[
            ThinkingBlock(
                text="Let me think.", origin="gemini", opaque={"thought_signature": thought_signature("Let me think.")}
            ),
            TextBlock(text="Answer"),
        ],
    )
    assert events[-1].usage == Usage(input_tokens=10, output_tokens=9, reasoning_tokens=6)
    # The SDK writes ThinkingConfig with proto field names, which the API accepts like camelCase.
    assert last_body(wire)["generationConfig"] == {"thinkingConfig": {"include_thoughts": True, "thinking_budget": 512}}


async def test_gemini_signatures_are_replayed_unchanged(wire, adapter):
    # given: a thinking turn that called a tool (the first call carries a signature)
    wire.push(Turn(thinking="Need the time.", tool_calls=[ToolCallSpec("clock__now", {"tz": "UTC"}, id="fc-9")]))
    events = await collect(adapter, messages=[Message.user("Time?")], tools=[CLOCK])
    assistant = events[-1].message
    history = [
        Message.user("Time?"),
        assistant,
        Message(role="tool", content=[ToolResultBlock(tool_call_id="fc-9", name="clock__now", content="12:00")]),
    ]
    wire.push(Turn(text="Noon."))

    # when
    await adapter.complete(messages=history, model=MODEL, tools=[CLOCK])

    # then
    body = last_body(wire)
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Need the time.", "thought": True, "thoughtSignature": thought_signature("Need the time.")},
            {
                "functionCall": {"id": "fc-9", "name": "clock__now", "args": {"tz": "UTC"}},
                "thoughtSignature": thought_signature("clock__now"),
            },
        ],
    }
    assert wire.validate(body) == []


async def test_other_providers_thinking_and_opaque_data_are_not_sent(wire, adapter):
    history = [
        Message.user("Time?"),
        Message(
            role="assistant",
            content=[
                ThinkingBlock(text="Anthropic musing", signature="EqQBCkYIBxgCKkD", origin="anthropic"),
                TextBlock(text="Checking.", origin="openai", opaque={"thought_signature": "c2lnOmZvcmVpZ24="}),
                ToolCallBlock(
                    id="toolu_01",
                    name="clock__now",
                    arguments={"tz": "UTC"},
                    origin="anthropic",
                    opaque={"thought_signature": "c2lnOmZvcmVpZ24="},
                ),
            ],
        ),
        Message(role="tool", content=[ToolResultBlock(tool_call_id="toolu_01", name="clock__now", content="12:00")]),
    ]
    wire.push(Turn(text="Noon."))

    await adapter.complete(messages=history, model=MODEL, tools=[CLOCK])

    body = last_body(wire)
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "Checking."},
            {
                "functionCall": {"id": "toolu_01", "name": "clock__now", "args": {"tz": "UTC"}},
                "thoughtSignature": FOREIGN_SIGNATURE_B64,
            },
        ],
    }
    assert "Anthropic musing" not in str(body)
    assert wire.validate(body) == []


# --- generation options and images --------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"tz": {"type": "string"}, "offset": {"type": ["integer", "null"]}},
    "required": ["tz"],
    "additionalProperties": False,
}


async def test_every_option_reaches_the_wire_in_gemini_terms(wire, adapter):
    # given
    options = GenerationOptions(
        top_p=0.8,
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}},
        tool_choice=ToolChoice(mode="tool", name=CLOCK.name),
    )

    # when
    await adapter.complete(messages=[Message.user("Time?")], model=MODEL, tools=[CLOCK], options=options)

    # then: the full JSON Schema goes as responseJsonSchema, the forced tool as ANY limited to its name
    body = last_body(wire)
    assert body["generationConfig"] == {
        "topP": 0.8,
        "seed": 7,
        "responseMimeType": "application/json",
        "responseJsonSchema": ANSWER_SCHEMA,
    }
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [CLOCK.name]}}
    assert GeminiAdapter.unsupported_options(options) == []


@pytest.mark.parametrize(("mode", "wire_mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
async def test_tool_choice_modes_become_function_calling_modes(wire, adapter, mode: str, wire_mode: str):
    options = GenerationOptions(
        tool_choice=ToolChoice.model_validate({"mode": mode}), response_format={"type": "json_object"}
    )

    await collect(adapter, messages=[Message.user("Time?")], tools=[CLOCK], options=options)

    body = last_body(wire)
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": wire_mode}}
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


async def test_images_go_as_inline_data_and_file_data(wire, adapter):
    message = Message(
        role="user",
        content=[
            TextBlock(text="Compare"),
            ImageBlock(data=PNG, media_type="image/png"),
            ImageBlock(url="https://example.com/photos/cat.webp?size=large"),
        ],
    )

    await collect(adapter, messages=[message])

    # (the SDK writes these nested fields in snake_case, which proto JSON accepts too)
    assert last_body(wire)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare"},
                {"inlineData": {"data": PNG, "mime_type": "image/png"}},
                {"fileData": {"file_uri": "https://example.com/photos/cat.webp?size=large", "mime_type": "image/webp"}},
            ],
        }
    ]
    assert GeminiAdapter.unsupported_content([message]) == []


# --- the fake's validator -----------------------------------------------------------------


def test_validator_accepts_a_well_formed_request(server):
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "x"}}}]},
        ],
        "tools": [{"functionDeclarations": [CLOCK_WIRE, {"name": "f"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 10, "includeThoughts": True}},
    }

    assert server.validate(body) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "model", "parts": [{"text": "x"}]}]}, "first content must have role 'user'"),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"text": "x", "inlineData": {}}]}]}, "exactly one data field"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text parameter"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": "{}"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                ]
            },
            "args",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "g"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                ]
            },
            "number of function response parts",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "g", "response": {}}}]},
                ]
            },
            "do not match",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "x"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f"}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "done"}}]},
                ]
            },
            "google.protobuf.Struct",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "1f"}]}],
            },
            "Invalid function name",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"$ref": "#/$defs/A"}},
                                    "$defs": {"A": {"type": "string"}},
                                },
                            }
                        ]
                    }
                ],
            },
            'Unknown name "$ref"',
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "OBJECT",
                                    "properties": {"a": {"type": "STRING"}},
                                    "additional_properties": False,
                                },
                            }
                        ]
                    }
                ],
            },
            'Unknown name "additional_properties"',
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "oneOf": []}}]}],
            },
            'Unknown name "oneOf"',
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
            },
            "only allowed with mode ANY",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
            },
            "'g' is not declared",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                "generationConfig": {"responseJsonSchema": {"type": "object"}},
            },
            "response_mime_type must be application/json",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "%%"}}]}]},
            "Base64 decoding failed",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://example.com/a"}}]}]},
            "file_data.mime_type: Required",
        ),
    ],
)
def test_validator_rejects_what_the_api_rejects(server, body, problem):
    problems = server.validate(body)

    assert any(problem in p for p in problems), problems


async def test_an_image_url_of_unknown_type_is_named_unsupported_and_replays_as_a_placeholder(wire, adapter):
    message = Message(role="user", content=[ImageBlock(url="https://example.com/render"), TextBlock(text="Seen?")])

    await collect(adapter, messages=[message])

    assert last_body(wire)["contents"] == [
        {"role": "user", "parts": [{"text": "[image: https://example.com/render]"}, {"text": "Seen?"}]}
    ]
    assert GeminiAdapter.unsupported_content([message]) == ["image_url"]
