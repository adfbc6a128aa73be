"""Hot swap: a conversation with tool calls made on one provider replays on each of the other three.

Each source provider produces a real two-round exchange (thinking where it has it, two parallel tool
calls, their results, a final answer) through its SDK and fake server. The canonical history is then
sent to every other provider through that provider's SDK; its fake validates the request the way the
real API does and would answer 400 to an invalid one.
"""

import json
from itertools import permutations

import pytest

from providers.types import (
    FinishEvent,
    GenerationOptions,
    Message,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolSpec,
)

from .fakes.providers import KINDS, MODELS, adapter_on, start_all, stop_all
from .fakes.wire import ToolCallSpec, Turn

TOOLS = [
    ToolSpec(
        name="weather__get_forecast",
        description="Forecast for a city.",
        input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
    ToolSpec(
        name="clock__now",
        description="Current time in a time zone.",
        input_schema={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    ),
]
SYSTEM = "You are a travel assistant."
THINKS = {"anthropic", "gemini", "ollama"}


@pytest.fixture(scope="module")
def servers():
    running = start_all()
    yield running
    stop_all(running)


@pytest.fixture
def wires(servers):
    for server in servers.values():
        server.reset()
    return servers


async def produce_conversation(kind: str, server) -> list[Message]:
    adapter = adapter_on(kind, server)
    question = Message.user("What's the weather in Paris, and what time is it there?")
    thinking = kind in THINKS
    server.push(
        Turn(
            text="Let me check both.",
            thinking="I need the forecast and the local time." if thinking else "",
            tool_calls=[
                ToolCallSpec("weather__get_forecast", {"city": "Paris"}),
                ToolCallSpec("clock__now", {"tz": "Europe/Paris"}),
            ],
        ),
        Turn(text="Sunny and 21°C; it is 14:00 in Paris."),
    )
    options = GenerationOptions(max_tokens=4096, thinking_budget=2048 if thinking else None)

    events = [
        event
        async for event in adapter.stream(
            messages=[question], model=MODELS[kind], tools=TOOLS, system=SYSTEM, options=options
        )
    ]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assistant = finish.message
    assert [call.name for call in assistant.tool_calls] == ["weather__get_forecast", "clock__now"]
    results = Message(
        role="tool",
        content=[
            ToolResultBlock(
                tool_call_id=assistant.tool_calls[0].id,
                name="weather__get_forecast",
                content='{"sky": "sunny", "celsius": 21}',
            ),
            ToolResultBlock(
                tool_call_id=assistant.tool_calls[1].id, name="clock__now", content="clock unavailable", is_error=True
            ),
        ],
    )
    final = await adapter.complete(
        messages=[question, assistant, results], model=MODELS[kind], tools=TOOLS, system=SYSTEM, options=options
    )
    assert final.message.text == "Sunny and 21°C; it is 14:00 in Paris."
    return [question, assistant, results, final.message, Message.user("Thanks! And tomorrow?")]


def _opaque_values(conversation: list[Message]) -> list[str]:
    values = []
    for message in conversation:
        for block in message.content:
            if isinstance(block, ThinkingBlock) and block.signature:
                values.append(block.signature)
            for value in (block.opaque or {}).values():
                values.append(json.dumps(value).strip('"'))
    return values


@pytest.mark.parametrize(("source", "target"), list(permutations(KINDS, 2)), ids=lambda kind: kind)
async def test_history_from_one_provider_replays_on_another(wires, source, target):
    # given a conversation made on the source provider, with its own opaque data
    conversation = await produce_conversation(source, wires[source])
    calls = [block for block in conversation[1].content if isinstance(block, ToolCallBlock)]
    if source in ("anthropic", "gemini"):
        assert _opaque_values(conversation), "the source should have produced signatures to keep to itself"

    # when it is sent to the target provider
    wires[target].push(Turn(text="Tomorrow: light rain, 17°C."))
    completion = await adapter_on(target, wires[target]).complete(
        messages=conversation,
        model=MODELS[target],
        tools=TOOLS,
        system=SYSTEM,
        options=GenerationOptions(max_tokens=1024),
    )

    # then the target's fake accepted a valid request that carries the whole exchange
    assert completion.message.text == "Tomorrow: light rain, 17°C."
    body = wires[target].requests[-1].json
    assert wires[target].validate(body) == []
    wire_text = json.dumps(body)
    for call in calls:
        assert call.name in wire_text
        for value in call.arguments.values():
            assert value in wire_text
        if target != "ollama":  # Ollama's wire has no tool-call ids
            assert call.id in wire_text
    assert "sunny" in wire_text
    assert "clock unavailable" in wire_text
    assert "Thanks! And tomorrow?" in wire_text
    # and none of the source's opaque data (signatures) leaked to another provider
    for value in _opaque_values(conversation):
        assert value not in wire_text


@pytest.mark.parametrize("kind", KINDS)
async def test_history_replays_on_its_own_provider_with_opaque_data(wires, kind):
    conversation = await produce_conversation(kind, wires[kind])

    wires[kind].push(Turn(text="Tomorrow: light rain."))
    completion = await adapter_on(kind, wires[kind]).complete(
        messages=conversation,
        model=MODELS[kind],
        tools=TOOLS,
        system=SYSTEM,
        options=GenerationOptions(max_tokens=4096, thinking_budget=2048 if kind in THINKS else None),
    )

    assert completion.message.text == "Tomorrow: light rain."
    wire_text = json.dumps(wires[kind].requests[-1].json)
    for value in _opaque_values(conversation):
        assert value in wire_text
