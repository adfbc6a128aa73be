"""The Anthropic-compatible API (/v1/messages): the official anthropic SDK over real sockets against a live
platform process, answered by the providers' wire-level fakes and real MCP server processes."""

import base64
import shutil

import anthropic
import httpx
import pytest

from accounts.services import api_key_create
from chats.models import Chat, ModelAlias
from chats.models import Message as MessageRow
from mcp_servers.models import McpServer
from providers.base import estimate_tokens
from providers.models import Provider
from providers.types import Message, ToolSpec
from usage.models import UsageRecord

from .conftest import platform_process, stdio_test_server, wait_until
from .factories import UserFactory
from .fakes.anthropic_wire import signature_for
from .fakes.providers import KINDS, MODELS
from .fakes.wire import Fail, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)
NPX = shutil.which("npx")
CLAUDE = f"anthropic/{MODELS['anthropic']}"
GPT = f"openai/{MODELS['openai']}"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HI = [{"role": "user", "content": "Hi"}]


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


def _client(live, key, **kwargs) -> anthropic.Anthropic:
    # base_url without /v1, as for Anthropic's own API: the SDK adds /v1/messages.
    return anthropic.Anthropic(base_url=live, api_key=key, max_retries=0, **kwargs)


def _wire(providers, kind: str = "anthropic", index: int = -1) -> dict:
    return providers[kind].requests_to({"openai": "/chat/completions", "anthropic": "/v1/messages"}[kind])[index].json


def _roles(chat_id: int) -> list[str]:
    return list(MessageRow.objects.filter(chat_id=chat_id).order_by("position").values_list("role", flat=True))


# --- messages -----------------------------------------------------------------------------------------------


def test_a_plain_message_is_anthropics_message_object_stored_with_usage_against_the_key(live, key, issued, providers):
    providers["anthropic"].push(Turn(text="Hello there.", input_tokens=12, output_tokens=3))

    raw = _client(live, key).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "No emoji."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        stop_sequences=["END"],
        metadata={"user_id": "someone"},
    )
    message = raw.parse()

    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", CLAUDE)
    assert [(block.type, block.text) for block in message.content] == [("text", "Hello there.")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)
    platform = message.model_extra["platform"]
    chat_id = platform["chat_id"]
    assert raw.headers["x-chat-id"] == str(chat_id)
    assert (platform["status"], platform["tool_executions"]) == ("completed", [])
    sent = _wire(providers)
    assert (sent["system"], sent["max_tokens"], sent["stop_sequences"]) == ("Be brief.\n\nNo emoji.", 100, ["END"])
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert _roles(chat_id) == ["user", "assistant"]
    record = UsageRecord.objects.get()
    assert (record.api_key_id, record.chat_id, record.input_tokens, record.output_tokens) == (
        issued.api_key.pk,
        chat_id,
        12,
        3,
    )
    assert platform["cost"] == f"{record.cost:.8f}"


def test_x_api_key_as_claude_code_sends_it(live, key, providers):
    providers["openai"].push(Turn(text="Hi from GPT."))

    response = httpx.post(
        f"{live}/v1/messages?beta=true",
        json={"model": GPT, "max_tokens": 50, "messages": HI, "temperature": 0.3, "top_p": 0.5},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )

    assert response.status_code == 200, response.content
    assert response.json()["content"] == [{"type": "text", "text": "Hi from GPT."}]
    sent = _wire(providers, "openai")
    assert (sent["temperature"], sent["top_p"]) == (0.3, 0.5)


def test_images_and_a_structured_output_reach_the_provider_in_its_terms(live, key, providers):
    providers["anthropic"].push(Turn(text='{"colour": "red"}'))
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n a tiny picture").decode()
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}

    message = _client(live, key).messages.create(
        model=CLAUDE,
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Which colour?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/dot.png"}},
                ],
            }
        ],
        extra_body={"output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}}},
    )

    assert message.content[0].text == '{"colour": "red"}'
    sent = _wire(providers)
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Which colour?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/dot.png"}},
    ]
    assert sent["output_config"]["format"]["type"] == "json_schema"
    assert sent["output_config"]["format"]["schema"]["properties"] == schema["properties"]


def test_the_stream_helper_gets_the_text_events_and_the_final_message(live, key, providers):
    providers["anthropic"].push(Turn(text="Streaming works fine.", input_tokens=9, output_tokens=4, chunk_size=5))

    with _client(live, key).messages.stream(model=CLAUDE, max_tokens=100, messages=HI) as stream:
        kinds = []
        texts = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                texts.append(event.text)
        final = stream.get_final_message()

    assert "".join(texts) == "Streaming works fine."
    assert len(texts) > 1
    assert kinds[0] == "message_start"
    assert kinds[-3:] == ["platform_status", "message_delta", "message_stop"]
    core = [kind for kind in kinds if kind not in ("text", "content_block_delta")]
    assert core == ["message_start", "content_block_start", "content_block_stop", *kinds[-3:]]
    assert [(block.type, block.text) for block in final.content] == [("text", "Streaming works fine.")]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("end_turn", 9, 4)
    assert final.model == CLAUDE


def test_the_raw_sse_sequence_is_anthropics(live, key, providers):
    providers["anthropic"].push(Turn(thinking="Let me see.", text="Sunny.", chunk_size=50))

    with httpx.stream(
        "POST",
        f"{live}/v1/messages",
        json={
            "model": CLAUDE,
            "max_tokens": 4096,
            "messages": HI,
            "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        },
        headers={"x-api-key": key},
    ) as response:
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]

    assert response.headers["content-type"].startswith("text/event-stream")
    assert events == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",  # the thinking block's signature
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "platform_status",
        "message_delta",
        "message_stop",
    ]


# --- client-side tools ----------------------------------------------------------------------------------------


def test_a_client_tool_round_trip(live, key, providers):
    providers["anthropic"].push(
        Turn(text="Let me check.", tool_calls=[ToolCallSpec("get_weather", {"city": "Rome"}, id="toolu_1")]),
        Turn(text="Warm in Rome."),
    )
    client = _client(live, key)
    messages: list = [{"role": "user", "content": "Weather in Rome?"}]

    first = client.messages.create(
        model=CLAUDE, max_tokens=200, messages=messages, tools=[WEATHER], tool_choice={"type": "auto"}
    )
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "warm"}]},
    ]
    second = client.messages.create(model=CLAUDE, max_tokens=200, messages=messages, tools=[WEATHER])

    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert (call.id, call.name, call.input) == ("toolu_1", "get_weather", {"city": "Rome"})
    assert first.model_extra["platform"]["tool_executions"] == []
    assert (second.stop_reason, second.content[0].text) == ("end_turn", "Warm in Rome.")
    sent = _wire(providers)
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "warm"}]},
    ]
    assert _wire(providers, index=0)["tool_choice"] == {"type": "auto"}


def test_client_tool_calls_stream_as_tool_use_blocks_and_the_chat_continues(live, key, providers):
    providers["anthropic"].push(
        Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Oslo"}, id="toolu_9")]),
        Turn(text="Cold in Oslo."),
    )
    client = _client(live, key)

    with client.messages.stream(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "Oslo?"}], tools=[WEATHER]
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    chat_id = stream.response.headers["x-chat-id"]
    second = client.messages.create(
        model=CLAUDE,
        max_tokens=200,
        tools=[WEATHER],
        metadata={"chat_id": chat_id},
        messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "cold"}]}],
    )

    assert "input_json" in kinds
    assert first.stop_reason == "tool_use"
    assert [(b.type, b.id, b.input) for b in first.content] == [("tool_use", "toolu_9", {"city": "Oslo"})]
    assert second.content[0].text == "Cold in Oslo."
    assert _roles(int(chat_id)) == ["user", "assistant", "tool", "assistant"]
    assert _wire(providers)["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "cold"}],
    }


def test_thinking_passes_through_with_its_signature_and_is_replayed(live, key, providers):
    providers["anthropic"].push(
        Turn(thinking="Rome is in Italy.", tool_calls=[ToolCallSpec("get_weather", {"city": "Rome"}, id="toolu_t")]),
        Turn(thinking="It is warm.", text="Warm."),
    )
    client = _client(live, key)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    messages: list = [{"role": "user", "content": "Rome?"}]

    first = client.messages.create(model=CLAUDE, max_tokens=4096, messages=messages, tools=[WEATHER], thinking=thinking)
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_t", "content": "warm"}]},
    ]
    second = client.messages.create(
        model=CLAUDE, max_tokens=4096, messages=messages, tools=[WEATHER], thinking=thinking
    )

    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == "Rome is in Italy."
    assert first.content[0].signature == signature_for("Rome is in Italy.")
    assert [block.type for block in second.content] == ["thinking", "text"]
    assert second.content[0].thinking == "It is warm."
    sent = _wire(providers)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # the signed thinking went back to the provider, which checks the signature as the real API does
    assert sent["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": "Rome is in Italy.",
        "signature": signature_for("Rome is in Italy."),
    }


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
        name="file-clerk", provider=Provider.objects.get(name="anthropic"), model=MODELS["anthropic"]
    )
    alias.mcp_servers.add(files)
    target = str(sandbox / "test.txt")
    providers["anthropic"].push(
        Turn(text="I'll write it.", tool_calls=[ToolCallSpec("files__write_file", {"path": target, "content": "42"})]),
        Turn(tool_calls=[ToolCallSpec("files__read_text_file", {"path": target})]),
        Turn(text="The file says 42."),
    )

    with platform_process() as live:
        message = _client(live, key, timeout=120).messages.create(
            model="file-clerk", max_tokens=500, messages=[{"role": "user", "content": "Write 42 and read it back"}]
        )

    assert message.model == "file-clerk"
    assert [(block.type, block.text) for block in message.content] == [
        ("text", "I'll write it."),
        ("text", "The file says 42."),
    ]
    assert message.stop_reason == "end_turn"
    assert (sandbox / "test.txt").read_text() == "42"
    executions = message.model_extra["platform"]["tool_executions"]
    assert [(e["round"], e["server"], e["tool"], e["is_error"]) for e in executions] == [
        (1, "files", "write_file", False),
        (2, "files", "read_text_file", False),
    ]
    assert executions[1]["content"] == "42"
    offered = {tool["name"] for tool in providers["anthropic"].requests_to("/v1/messages")[0].json["tools"]}
    assert {"files__write_file", "files__read_text_file"} <= offered


def test_mcp_servers_asked_in_the_request_stream_as_platform_events(providers, key):
    stdio_test_server().save()
    providers["anthropic"].push(
        Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "pong"})]),
        Turn(text="It said pong."),
    )

    with (
        platform_process() as live,
        _client(live, key).messages.stream(
            model=CLAUDE,
            max_tokens=100,
            messages=[{"role": "user", "content": "Echo pong"}],
            extra_body={"mcp_servers": ["test"]},
        ) as stream,
    ):
        events = list(stream)
        final = stream.get_final_message()

    executions = [event.model_dump() for event in events if event.type == "platform_tool_execution"]
    assert [(e["status"], e["name"], e["server"]) for e in executions] == [
        ("started", "test__echo", "test"),
        ("finished", "test__echo", "test"),
    ]
    assert executions[1]["content"] == "pong"
    assert [(block.type, block.text) for block in final.content] == [("text", "It said pong.")]
    status = next(event.model_dump() for event in events if event.type == "platform_status")
    assert (status["status"], [e["content"] for e in status["tool_executions"]]) == ("completed", ["pong"])


def test_a_call_that_needs_approval_ends_the_response_and_the_turn_goes_on_once_decided(providers, key):
    stdio_test_server().save()  # wipe is destructive: it asks
    providers["anthropic"].push(
        Turn(text="Wiping.", tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]),
        Turn(text="Wiped it."),
    )

    with platform_process() as live:
        client = _client(live, key)
        waiting = client.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=[{"role": "user", "content": "Wipe"}],
            extra_body={"mcp_servers": ["test"]},
        )
        platform = waiting.model_extra["platform"]
        with pytest.raises(anthropic.ConflictError) as busy:  # while it waits the chat is busy
            client.messages.create(
                model=CLAUDE, max_tokens=100, messages=HI, extra_headers={"X-Chat-Id": str(platform["chat_id"])}
            )
        decided = httpx.post(
            f"{live}/api/chats/{platform['chat_id']}/approvals/{platform['approvals'][0]['approval_id']}",
            json={"decision": "approve"},
            headers={"Authorization": f"Bearer {key}"},
        )
        wait_until(lambda: _roles(platform["chat_id"]) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert (waiting.stop_reason, waiting.content[0].text) == ("end_turn", "Wiping.")
    assert platform["status"] == "awaiting_approval"
    assert [(a["server"], a["tool"], a["arguments"]) for a in platform["approvals"]] == [
        ("test", "wipe", {"note": "n"})
    ]
    assert busy.value.status_code == 409
    assert busy.value.body["error"]["code"] == "turn_in_progress"
    assert decided.status_code == 200
    final = MessageRow.objects.filter(chat_id=platform["chat_id"]).order_by("position").last()
    assert final.content == [{"type": "text", "text": "Wiped it."}]


# --- storage ----------------------------------------------------------------------------------------------


def test_store_false_leaves_no_chat_but_a_usage_row(live, key, issued, providers):
    providers["anthropic"].push(Turn(text="Forgotten.", input_tokens=7, output_tokens=2))

    raw = _client(live, key).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=50,
        messages=[{"role": "user", "content": "Do not keep this"}],
        extra_body={"store": False},
    )

    assert raw.parse().content[0].text == "Forgotten."
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
    providers["anthropic"].push(Turn(text="Nice to meet you, Ann."), Turn(text="You are Ann."))
    other_key = api_key_create(owner=UserFactory(username="mallory"), name="other").secret
    client = _client(live, key)

    first = client.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "I am Ann."}])
    chat_id = first.model_extra["platform"]["chat_id"]
    second = client.messages.create(
        model=CLAUDE,
        max_tokens=50,
        messages=[{"role": "user", "content": "Who am I?"}],
        metadata={"chat_id": chat_id},
    )
    with pytest.raises(anthropic.NotFoundError) as foreign:
        _client(live, other_key).messages.create(
            model=CLAUDE, max_tokens=50, messages=HI, extra_headers={"X-Chat-Id": str(chat_id)}
        )

    assert second.content[0].text == "You are Ann."
    assert second.model_extra["platform"]["chat_id"] == chat_id
    assert _wire(providers)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "I am Ann."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Nice to meet you, Ann."}]},
        {"role": "user", "content": [{"type": "text", "text": "Who am I?"}]},
    ]
    assert foreign.value.body["error"]["type"] == "not_found_error"
    assert _roles(chat_id) == ["user", "assistant", "user", "assistant"]
    assert Chat.objects.count() == 1


# --- errors -----------------------------------------------------------------------------------------------


def _post(live, key, body, **headers) -> httpx.Response:
    return httpx.post(f"{live}/v1/messages", json=body, headers={"x-api-key": key, **headers})


def test_errors_map_to_the_sdks_exception_classes(live, key, providers):
    client = _client(live, key)

    with pytest.raises(anthropic.AuthenticationError) as unauthenticated:
        _client(live, "sk-not-a-key").messages.create(model=CLAUDE, max_tokens=10, messages=HI)
    with pytest.raises(anthropic.NotFoundError) as unknown_model:
        client.messages.create(model="nobody/nothing", max_tokens=10, messages=HI)
    with pytest.raises(anthropic.BadRequestError) as top_k:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=HI, extra_body={"top_k": 5})
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        client.messages.create(
            model=CLAUDE, max_tokens=10, messages=HI, tools=[{"type": "web_search_20250305", "name": "web_search"}]
        )
    with pytest.raises(anthropic.BadRequestError) as small_budget:
        client.messages.create(
            model=CLAUDE, max_tokens=4096, messages=HI, thinking={"type": "enabled", "budget_tokens": 100}
        )
    with pytest.raises(anthropic.BadRequestError) as temperature:  # Claude's current API has no sampling knobs
        client.messages.create(model=CLAUDE, max_tokens=10, messages=HI, extra_body={"temperature": 0.5})
    providers["anthropic"].push(*[Fail(401, "bad upstream key")] * 3)
    with pytest.raises(anthropic.InternalServerError) as upstream:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=HI)
    providers["anthropic"].push(*[Fail(500, "upstream broke")] * 6)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=HI)

    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.body["error"]["type"] == "authentication_error"
    assert unknown_model.value.body["error"]["type"] == "not_found_error"
    assert unknown_model.value.body["error"]["code"] == "model_not_found"
    assert top_k.value.body["error"]["param"] == "top_k"
    assert server_tool.value.body["error"]["code"] == "unsupported_tool"
    assert small_budget.value.body["error"]["param"] == "thinking.budget_tokens"
    assert temperature.value.body["error"]["code"] == "unsupported_parameter"
    assert upstream.value.status_code == 502
    assert upstream.value.body["error"]["code"] == "provider_authentication_failed"
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"] == {
        "type": "overloaded_error",
        "message": overloaded.value.body["error"]["message"],
        "code": "provider_unavailable",
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": CLAUDE, "messages": HI}, "max_tokens"),
        ({"model": CLAUDE, "max_tokens": "10", "messages": HI}, "max_tokens"),
        ({"model": CLAUDE, "max_tokens": 10, "messages": []}, "messages"),
        ({"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        (
            {"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
        ),
        (
            {"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
            "messages.0.content.0",
        ),
        (
            {
                "model": CLAUDE,
                "max_tokens": 10,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%"}}
                        ],
                    }
                ],
            },
            "messages.0.content.0.source",
        ),
        (
            {
                "model": CLAUDE,
                "max_tokens": 10,
                "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}],
            },
            "messages.0.content.0",
        ),
        ({"model": CLAUDE, "max_tokens": 10, "messages": HI, "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"model": CLAUDE, "max_tokens": 10, "messages": HI, "tools": [{"name": "x"}]}, "tools.0.input_schema"),
        (
            {"model": CLAUDE, "max_tokens": 10, "messages": HI, "mcp_servers": [{"type": "url", "url": "x"}]},
            "mcp_servers.0",
        ),
        ({"model": CLAUDE, "max_tokens": 10, "messages": HI, "surprise": True}, "surprise"),
        ({"model": CLAUDE, "max_tokens": 10, "messages": HI, "metadata": {"chat_id": "abc"}}, "metadata.chat_id"),
        ({"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "assistant", "content": "Hi"}]}, "messages"),
    ],
)
def test_bad_requests_are_400s_in_anthropics_shape(live, key, providers, body, param):
    response = _post(live, key, body)

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    assert error["error"]["message"]
    assert not providers["anthropic"].requests_to("/v1/messages")


def test_bad_json_and_a_missing_key(live, key):
    bad_json = httpx.post(f"{live}/v1/messages", content=b"{nope", headers={"x-api-key": key})
    keyless = httpx.post(f"{live}/v1/messages", json={"model": CLAUDE, "max_tokens": 1, "messages": HI})
    wrong_method = httpx.get(f"{live}/v1/messages", headers={"x-api-key": key})
    too_large = httpx.post(
        f"{live}/v1/messages", content=b'{"model": "' + b"x" * 1024 * 1024 + b'"}', headers={"x-api-key": key}
    )

    assert (bad_json.status_code, bad_json.json()["error"]["code"]) == (400, "invalid_json")
    assert keyless.status_code == 401
    assert keyless.json()["error"]["type"] == "authentication_error"
    assert wrong_method.status_code == 405
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "request_too_large"


def test_the_platform_rate_limit_is_a_rate_limit_error_with_retry_after(providers, key):
    with platform_process(RATE_LIMIT_PER_MINUTE="2") as live:
        client = _client(live, key)
        for _ in range(2):
            client.messages.create(model=CLAUDE, max_tokens=10, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model=CLAUDE, max_tokens=10, messages=HI)

    assert limited.value.status_code == 429
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert limited.value.body["error"]["type"] == "rate_limit_error"


def test_a_turn_error_mid_stream_is_an_error_event_the_sdk_raises(live, key, providers):
    providers["anthropic"].push(*[Fail(500, "upstream broke")] * 6)

    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        _client(live, key).messages.stream(model=CLAUDE, max_tokens=10, messages=HI) as stream,
    ):
        stream.get_final_message()

    assert raised.value.body["error"]["type"] == "overloaded_error"
    assert raised.value.body["error"]["code"] == "provider_unavailable"


# --- count_tokens -----------------------------------------------------------------------------------------


def test_count_tokens_is_the_documented_estimate_when_the_provider_cannot_count(live, key, providers):
    client = _client(live, key)
    messages = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]

    raw = client.messages.with_raw_response.count_tokens(
        model=GPT, system="Be brief.", messages=messages, tools=[WEATHER]
    )
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nobody/nothing", messages=messages)
    with pytest.raises(anthropic.AuthenticationError):
        _client(live, "sk-wrong").messages.count_tokens(model=GPT, messages=messages)

    counted = raw.parse()
    expected = estimate_tokens(
        messages=[Message.user("How many tokens is this sentence, roughly?")],
        tools=[ToolSpec(**WEATHER)],
        system="Be brief.",
    )
    assert counted.input_tokens == expected
    assert counted.model_extra["platform"] == {"estimated": True}
    assert raw.headers["x-token-count"] == "estimated"
    assert not providers["openai"].requests_to("/chat/completions")


def test_count_tokens_is_the_providers_own_count_where_the_provider_counts(live, key, providers):
    raw = _client(live, key).messages.with_raw_response.count_tokens(
        model=CLAUDE,
        system="Be brief.",
        messages=[{"role": "user", "content": "How many tokens is this sentence, roughly?"}],
        tools=[WEATHER],
    )

    counted = raw.parse()
    # The fake counts words: 7 in the message, 2 in the system, 7 in the tool (name, description, required).
    assert counted.input_tokens == 16
    assert counted.model_extra["platform"] == {"estimated": False}
    assert raw.headers["x-token-count"] == "provider"
    [request] = providers["anthropic"].requests
    assert request.path == "/v1/messages/count_tokens"
    assert request.json == {
        "model": MODELS["anthropic"],
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "How many tokens is this sentence, roughly?"}]}
        ],
        "tools": [WEATHER],
    }


# --- any provider behind the front --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_anthropic_shaped_request_is_answered_by_each_provider(live, key, providers, kind):
    model = f"{kind}/{MODELS[kind]}"
    providers[kind].push(
        Turn(tool_calls=[ToolCallSpec("get_weather", {"city": "Rome"}, id=f"call_{kind}")]),
        Turn(text=f"{kind} says: warm in Rome."),
    )
    client = _client(live, key)
    messages: list = [{"role": "user", "content": "Rome?"}]

    first = client.messages.create(model=model, max_tokens=200, system="Be brief.", messages=messages, tools=[WEATHER])
    call = next(block for block in first.content if block.type == "tool_use")
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "warm"}]},
    ]
    with client.messages.stream(
        model=model, max_tokens=200, system="Be brief.", messages=messages, tools=[WEATHER]
    ) as stream:
        text = "".join(stream.text_stream)
        second = stream.get_final_message()

    assert first.stop_reason == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "Rome"})
    assert text == f"{kind} says: warm in Rome."
    assert (second.model, second.stop_reason) == (model, "end_turn")
    assert providers[kind].requests[-1].body.count(b"warm") >= 1  # the result reached the provider


def test_streamed_thinking_carries_its_signature_so_a_client_can_replay_it(live, key, providers):
    providers["anthropic"].push(Turn(thinking="Rome is in Italy.", text="Warm.", chunk_size=5))
    client = _client(live, key)

    with client.messages.stream(
        model=CLAUDE,
        max_tokens=4096,
        messages=[{"role": "user", "content": "Rome?"}],
        thinking={"type": "enabled", "budget_tokens": 2048},
        extra_body={"store": False},  # from the stream itself, not from stored rows
    ) as stream:
        final = stream.get_final_message()

    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Rome is in Italy."
    assert final.content[0].signature == signature_for("Rome is in Italy.")
