"""Streams as their bytes really arrive: SSE lines split across network chunks, other line endings, raw
UTF-8, and errors inside a 200 stream, through the real SDKs against the local wire servers."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from providers.base import ProviderAdapter
from providers.errors import ProviderRateLimited, ProviderUnavailable
from providers.types import (
    FinishEvent,
    Message,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallBlock,
    ToolCallEvent,
    ToolSpec,
    Usage,
    UsageEvent,
)

from .fakes.anthropic_wire import AnthropicWire, signature_for
from .fakes.openai_wire import OpenAIWire
from .fakes.providers import adapter_on
from .fakes.wire import ToolCallSpec, Turn, WireServer, sse

WEATHER = ToolSpec(
    name="weather__forecast",
    description="Forecast for a city",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
)
# U+2028 and U+0085 end a line for str.splitlines (and so for httpx's iter_lines), but not in SSE.
TEXT = "Sunny\u2028and 21°C\x85ok"
TEXT_PIECES = ["Sunny", "\u2028and ", "21°C\x85", "ok"]
THOUGHT = "Let me see."
THOUGHT_PIECES = ["Let m", "e see", "."]
CALL = ToolCallBlock(id="call_1", name="weather__forecast", arguments={"city": "Paris"})
TURN = Turn(
    thinking=THOUGHT,
    text=TEXT,
    tool_calls=[ToolCallSpec(CALL.name, CALL.arguments, id=CALL.id)],
    chunk_size=5,
    input_tokens=9,
    output_tokens=7,
)
# (bytes per network chunk, line ending): one byte at a time splits every line and every UTF-8 sequence.
ARRIVALS = [(1, b"\n"), (7, b"\r\n"), (3, b"\r"), (1_000_000, b"\n")]


@pytest.fixture(scope="module")
def servers():
    running = {"openai": OpenAIWire().start(), "anthropic": AnthropicWire().start()}
    yield running
    for server in running.values():
        server.stop()


@pytest.fixture
def openai_wire(servers) -> OpenAIWire:
    servers["openai"].reset()
    return servers["openai"]


@pytest.fixture
def anthropic_wire(servers) -> AnthropicWire:
    servers["anthropic"].reset()
    return servers["anthropic"]


def raw_utf8(body: bytes) -> bytes:
    """The same events with non-ASCII text as raw UTF-8 rather than \\u escapes, as many servers send it."""
    lines = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            line = b"data: " + json.dumps(json.loads(line[6:]), ensure_ascii=False).encode()
        lines.append(line)
    return b"\n".join(lines)


def rearrange(chunks: list[bytes], *, size: int, newline: bytes) -> list[bytes]:
    body = raw_utf8(b"".join(chunks)).replace(b"\n", newline)
    return [body[i : i + size] for i in range(0, len(body), size)]


def serve_rearranged(monkeypatch, wire: WireServer, method: str, *, size: int, newline: bytes) -> None:
    render: Callable[..., list[bytes]] = getattr(wire, method)
    monkeypatch.setattr(wire, method, lambda *args: rearrange(render(*args), size=size, newline=newline))


def serve_in_turn(monkeypatch, wire: WireServer, method: str, *streams: list[bytes] | None) -> None:
    """Each stream request gets the next of ``streams``; None renders the scripted turn as usual."""
    render: Callable[..., list[bytes]] = getattr(wire, method)
    queue = list(streams)
    monkeypatch.setattr(wire, method, lambda *args: queue.pop(0) or render(*args))


async def collect_into(adapter: ProviderAdapter, model: str, events: list[StreamEvent]) -> None:
    async for event in adapter.stream(messages=[Message.user("Weather?")], model=model, tools=[WEATHER]):
        events.append(event)


# --- OpenAI ----------------------------------------------------------------------------


def openai_chunk(delta: dict, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return sse(None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [choice]})


@pytest.mark.parametrize(("size", "newline"), ARRIVALS)
async def test_openai_stream_is_the_same_however_its_bytes_arrive(monkeypatch, openai_wire, size, newline):
    serve_rearranged(monkeypatch, openai_wire, "_chunks", size=size, newline=newline)
    openai_wire.push(TURN)
    adapter = adapter_on("openai", openai_wire)

    events = [e async for e in adapter.stream(messages=[Message.user("Weather?")], model="gpt-4o", tools=[WEATHER])]

    usage = Usage(input_tokens=9, output_tokens=7)
    assert events == [
        *[ThinkingDelta(text=piece) for piece in THOUGHT_PIECES],
        *[TextDelta(text=piece) for piece in TEXT_PIECES],
        ToolCallEvent(call=CALL),
        UsageEvent(usage=usage),
        FinishEvent(
            reason="tool_calls",
            raw_reason="tool_calls",
            message=Message(role="assistant", content=[ThinkingBlock(text=THOUGHT), TextBlock(text=TEXT), CALL]),
            usage=usage,
            model="gpt-4o",
        ),
    ]


async def test_openai_error_inside_the_stream_raises_after_the_text_already_sent(monkeypatch, openai_wire):
    error = {"message": "The server had an error while processing your request.", "type": "server_error"}
    stream = [openai_chunk({"role": "assistant", "content": "Hel"}), openai_chunk({"content": "lo"})]
    serve_in_turn(monkeypatch, openai_wire, "_chunks", [*stream, sse(None, {"error": error})])
    openai_wire.push(Turn(text="unused"))
    events: list[StreamEvent] = []

    with pytest.raises(ProviderUnavailable) as caught:
        await collect_into(adapter_on("openai", openai_wire), "gpt-4o", events)

    assert events == [TextDelta(text="Hel"), TextDelta(text="lo")]
    assert (caught.value.message, caught.value.status) == (error["message"], None)
    assert len(openai_wire.requests) == 1  # text had gone out, so no retry


async def test_openai_error_inside_the_stream_before_any_output_is_retried(monkeypatch, openai_wire):
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    serve_in_turn(monkeypatch, openai_wire, "_chunks", [sse(None, {"error": error})], None)
    openai_wire.push(Turn(text="first"), Turn(text="second"))

    events = [e async for e in adapter_on("openai", openai_wire).stream(messages=[Message.user("Hi")], model="gpt-4o")]

    assert events[-1].message.text == "second"
    assert len(openai_wire.requests) == 2


async def test_openai_error_inside_the_stream_maps_its_code(monkeypatch, openai_wire):
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    serve_in_turn(monkeypatch, openai_wire, "_chunks", [sse(None, {"error": error})])
    openai_wire.push(Turn(text="unused"))
    adapter = adapter_on("openai", openai_wire, max_retries=0)

    with pytest.raises(ProviderRateLimited) as caught:
        await collect_into(adapter, "gpt-4o", [])

    assert (caught.value.message, caught.value.status, caught.value.retry_after) == ("Rate limit reached", None, None)


async def test_openai_stream_cut_short_still_finishes_its_tool_calls(monkeypatch, openai_wire):
    # given: a compatible server that ends the body without a finish_reason, usage or [DONE]
    call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "weather__forecast"}}
    stream = [
        b": keep-alive comment\n\n",
        openai_chunk(
            {"role": "assistant", "tool_calls": [{**call, "function": {**call["function"], "arguments": ""}}]}
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    ]
    serve_in_turn(monkeypatch, openai_wire, "_chunks", stream)
    openai_wire.push(Turn(text="unused"))

    events: list[StreamEvent] = []
    await collect_into(adapter_on("openai", openai_wire), "gpt-4o", events)

    call_block = ToolCallBlock(id="call_9", name="weather__forecast", arguments={"city": "Oslo"})
    assert events == [
        ToolCallEvent(call=call_block),
        FinishEvent(
            reason="tool_calls",
            raw_reason=None,
            message=Message(role="assistant", content=[call_block]),
            usage=Usage(),
            model="gpt-4o",
        ),
    ]


# --- Anthropic -------------------------------------------------------------------------


def anthropic_start(model: str) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    return sse("message_start", {"type": "message_start", "message": message})


def anthropic_text(text: str) -> list[bytes]:
    opening = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return [sse("content_block_start", opening), sse("content_block_delta", delta)]


@pytest.mark.parametrize(("size", "newline"), ARRIVALS)
async def test_anthropic_stream_is_the_same_however_its_bytes_arrive(monkeypatch, anthropic_wire, size, newline):
    serve_rearranged(monkeypatch, anthropic_wire, "_sse", size=size, newline=newline)
    anthropic_wire.push(TURN)
    adapter = adapter_on("anthropic", anthropic_wire)

    events = [e async for e in adapter.stream(messages=[Message.user("Weather?")], model="claude-x", tools=[WEATHER])]

    usage = Usage(input_tokens=9, output_tokens=7)
    thinking = ThinkingBlock(text=THOUGHT, signature=signature_for(THOUGHT), origin="anthropic")
    assert events == [
        *[ThinkingDelta(text=piece) for piece in THOUGHT_PIECES],
        ThinkingDelta(text="", signature=signature_for(THOUGHT)),  # as the thinking block ends
        *[TextDelta(text=piece) for piece in TEXT_PIECES],
        ToolCallEvent(call=CALL),
        UsageEvent(usage=usage),
        FinishEvent(
            reason="tool_calls",
            raw_reason="tool_use",
            message=Message(role="assistant", content=[thinking, TextBlock(text=TEXT), CALL]),
            usage=usage,
            model="claude-x",
        ),
    ]


async def test_anthropic_error_event_raises_after_the_text_already_sent(monkeypatch, anthropic_wire):
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    serve_in_turn(monkeypatch, anthropic_wire, "_sse", [anthropic_start("claude-x"), *anthropic_text("Hi"), error])
    anthropic_wire.push(Turn(text="unused"))
    events: list[StreamEvent] = []

    with pytest.raises(ProviderUnavailable) as caught:
        await collect_into(adapter_on("anthropic", anthropic_wire), "claude-x", events)

    assert events == [TextDelta(text="Hi")]
    assert (caught.value.message, caught.value.status) == ("Overloaded", 529)
    assert len(anthropic_wire.requests) == 1


async def test_anthropic_error_event_before_any_output_is_retried(monkeypatch, anthropic_wire):
    error = sse("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}})
    serve_in_turn(monkeypatch, anthropic_wire, "_sse", [sse("ping", {"type": "ping"}), error], None)
    anthropic_wire.push(Turn(text="first"), Turn(text="second"))
    adapter = adapter_on("anthropic", anthropic_wire)

    events = [e async for e in adapter.stream(messages=[Message.user("Hi")], model="claude-x")]

    assert events[-1].message.text == "second"
    assert len(anthropic_wire.requests) == 2


async def test_anthropic_stream_ending_before_message_stop_is_unavailable(monkeypatch, anthropic_wire):
    serve_in_turn(monkeypatch, anthropic_wire, "_sse", [anthropic_start("claude-x"), *anthropic_text("Hi")])
    anthropic_wire.push(Turn(text="unused"))
    events: list[StreamEvent] = []

    with pytest.raises(ProviderUnavailable) as caught:
        await collect_into(adapter_on("anthropic", anthropic_wire), "claude-x", events)

    assert events == [TextDelta(text="Hi")]
    assert caught.value.message == "The stream ended before message_stop."
