"""Tool calls that need a person's yes: policies, the approval event, and deciding over WebSocket and REST.

Real MCP server processes (the stdio test server, whose ``wipe`` is marked destructive and ``peek``
read-only), models scripted through the real provider SDKs, and, where a turn must outlive its request
or run on another worker, live platform processes over Redis.
"""

import asyncio
import json

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from httpx_sse import aconnect_sse

from accounts.services import api_key_create
from chats.models import Chat, Message, ToolApproval, ToolExecution
from mcp_servers.host import get_host

from .conftest import platform_process, stdio_test_server, wait_until, ws_frames_until, ws_open
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"message": "Go", "provider": "openai", "model": MODELS["openai"]}


@pytest.fixture
def key(user):
    return api_key_create(owner=user, name="approvals").secret


def _server(**fields) -> None:
    stdio_test_server(**fields).save()
    get_host().ready(20)


def _executions(chat: Chat) -> list[tuple[str, str, bool, str, bool]]:
    return [
        (row.tool, row.approval_decision, row.approval_auto, row.approval_policy, row.is_error)
        for row in ToolExecution.objects.filter(message__chat=chat).order_by("id")
    ]


def _tool_results(providers, index: int) -> list[str]:
    """What the model was sent as tool results in its ``index``-th request."""
    messages = providers["openai"].requests_to("/chat/completions")[index].json["messages"]
    return [message["content"] for message in messages if message["role"] == "tool"]


def _roles(chat: Chat) -> list[str]:
    return list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True))


# --- policies that need nobody ---------------------------------------------------------------------


def test_hints_and_admin_policies_decide_without_asking(api, user, providers):
    # peek is read-only (allow), echo has no hint (the server default: allow), fail is denied by the admin
    _server(tool_policies={"fail": "deny"})
    providers["openai"].push(
        Turn(
            tool_calls=[
                ToolCallSpec("test__peek", {"note": "a"}),
                ToolCallSpec("test__echo", {"text": "b"}),
                ToolCallSpec("test__fail", {"message": "c"}),
            ]
        ),
        Turn(text="Done."),
    )
    chat = ChatFactory(owner=user)

    response = api.post(f"/api/chats/{chat.pk}/messages", BODY, format="json")

    assert response.status_code == 200, response.content
    assert _tool_results(providers, 1) == [
        "read a",
        "b",
        "Error: This tool call is denied by the administrator's policy.",
    ]
    assert _executions(chat) == [
        ("peek", "approved", True, "allow", False),
        ("echo", "approved", True, "allow", False),
        ("fail", "denied", True, "deny", True),
    ]
    assert not ToolApproval.objects.exists()
    history = api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    approval = history[1]["tool_executions"][2]["approval"]
    assert (approval["policy"], approval["decision"], approval["auto"]) == ("deny", "denied", True)


def test_an_admin_allow_wins_over_a_destructive_hint(api, user, providers):
    _server(tool_policies={"wipe": "allow"})
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Done."))
    chat = ChatFactory(owner=user)

    assert api.post(f"/api/chats/{chat.pk}/messages", BODY, format="json").status_code == 200

    assert _executions(chat) == [("wipe", "approved", True, "allow", False)]


# --- over the WebSocket ----------------------------------------------------------------------------


async def test_ask_over_the_websocket_approve_and_remember_for_the_chat(user, key, providers):
    # wipe is destructive: it asks; echo in the same round needs nobody and runs meanwhile
    await sync_to_async(_server)()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n1"}), ToolCallSpec("test__echo", {"text": "e"})]),
        Turn(text="Wiped."),
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n2"})]),
        Turn(text="Wiped again."),
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)
    message = {"type": "message", "message": "Wipe", "provider": "openai", "model": MODELS["openai"]}

    await communicator.send_json_to(message)
    frames = await ws_frames_until(communicator, "tool_approval_required")
    asked = frames[-1]
    assert (asked["server"], asked["tool"], asked["arguments"]) == ("test", "wipe", {"note": "n1"})
    # the echo call finishes while wipe waits
    while (frame := await communicator.receive_json_from(timeout=20))["type"] != "tool_call_finished":
        pass
    assert frame["name"] == "test__echo"
    await communicator.send_json_to(
        {"type": "approval", "approval_id": asked["approval_id"], "decision": "approve", "remember": "chat"}
    )
    frames = await ws_frames_until(communicator, "turn_done")
    # the next turn's wipe runs without asking: remembered for this chat
    await communicator.send_json_to(message)
    later = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    decided = next(f for f in frames if f["type"] == "tool_approval_decided")
    assert (decided["decision"], decided["auto"], decided["remember"]) == ("approved", False, True)
    wiped = next(f for f in frames if f["type"] == "tool_call_finished")
    assert (wiped["name"], wiped["is_error"], wiped["content"]) == ("test__wipe", False, "wiped n1")
    assert frames[-1]["success"] is True
    assert "tool_approval_required" not in [f["type"] for f in later]
    assert later[-1]["success"] is True
    rows = await sync_to_async(lambda: _executions(chat))()
    assert rows == [
        ("wipe", "approved", False, "ask", False),
        ("echo", "approved", True, "allow", False),
        ("wipe", "approved", True, "ask", False),
    ]
    stored = await sync_to_async(lambda: ToolExecution.objects.filter(tool="wipe").order_by("id").first())()
    assert stored.approval_by_id == user.pk
    assert stored.approval_at is not None
    assert (await sync_to_async(Chat.objects.get)(pk=chat.pk)).approved_tools == ["test__wipe"]


async def test_deny_over_the_websocket_becomes_an_error_the_model_sees(user, key, providers):
    await sync_to_async(_server)()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="I was not allowed to.")
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    communicator, _ready = await ws_open(chat.pk, key)

    await communicator.send_json_to(
        {"type": "message", "message": "Wipe", "provider": "openai", "model": MODELS["openai"]}
    )
    asked = (await ws_frames_until(communicator, "tool_approval_required"))[-1]
    await communicator.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "deny"})
    frames = await ws_frames_until(communicator, "turn_done")
    await communicator.disconnect()

    finished = next(f for f in frames if f["type"] == "tool_call_finished")
    assert (finished["is_error"], finished["content"]) == (True, "The user denied this tool call.")
    assert frames[-1]["success"] is True
    assert await sync_to_async(lambda: _tool_results(providers, 1))() == ["Error: The user denied this tool call."]
    assert await sync_to_async(lambda: _executions(chat))() == [("wipe", "denied", False, "ask", True)]
    assert await sync_to_async(lambda: get_host().statuses())()  # the server is up, and was never called:
    assert next(s.calls for s in await sync_to_async(get_host().statuses)() if s.name == "test") == 0


async def test_a_reconnecting_tab_is_asked_again_and_bad_decisions_are_errors(user, other_user, key, providers):
    await sync_to_async(_server)()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Done."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    first, _ready = await ws_open(chat.pk, key)
    await first.send_json_to({"type": "message", "message": "Wipe", "provider": "openai", "model": MODELS["openai"]})
    asked = (await ws_frames_until(first, "tool_approval_required"))[-1]
    await first.disconnect()  # the page is closed; the turn waits on

    second, ready = await ws_open(chat.pk, key)
    other_key = await sync_to_async(lambda: api_key_create(owner=other_user, name="x").secret)()
    other_chat = await sync_to_async(ChatFactory)(owner=other_user)
    stranger, _ = await ws_open(other_chat.pk, other_key)
    await stranger.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "approve"})
    refused = await stranger.receive_json_from(timeout=20)
    await second.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "maybe"})
    invalid = await second.receive_json_from(timeout=20)
    await second.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "approve"})
    frames = await ws_frames_until(second, "turn_done")
    await second.send_json_to({"type": "approval", "approval_id": asked["approval_id"], "decision": "deny"})
    late = await second.receive_json_from(timeout=20)
    await second.disconnect()
    await stranger.disconnect()

    assert ready["turn_in_progress"] is True
    assert [a["approval_id"] for a in ready["pending_approvals"]] == [asked["approval_id"]]
    assert ready["pending_approvals"][0] == asked
    assert (refused["type"], refused["code"]) == ("error", "not_found")
    assert (invalid["type"], invalid["code"]) == ("error", "invalid_decision")
    assert "decision" in invalid["details"]
    assert next(f for f in frames if f["type"] == "tool_call_finished")["content"] == "wiped n"
    assert (late["code"], late["details"]) == ("approval_not_pending", {"status": "approved"})


# --- over REST, with the turn on a live worker -----------------------------------------------------


def _client(base_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_a_json_turn_answers_202_and_goes_on_once_decided(user, key, providers):
    _server()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Wiped it."))
    chat = ChatFactory(owner=user)

    with platform_process() as base_url:

        async def scenario():
            async with _client(base_url, key) as client:
                waiting = await client.post(f"/api/chats/{chat.pk}/messages", json=BODY)
                listed = await client.get(f"/api/chats/{chat.pk}/approvals")
                approval_id = waiting.json()["approvals"][0]["approval_id"]
                bad = await client.post(f"/api/chats/{chat.pk}/approvals/{approval_id}", json={"decision": "yes"})
                unknown = await client.post(f"/api/chats/{chat.pk}/approvals/not-a-uuid", json={"decision": "deny"})
                decided = await client.post(
                    f"/api/chats/{chat.pk}/approvals/{approval_id}", json={"decision": "approve"}
                )
                return waiting, listed, bad, unknown, decided

        waiting, listed, bad, unknown, decided = asyncio.run(scenario())
        wait_until(lambda: _roles(chat) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert waiting.status_code == 202
    body = waiting.json()
    assert (body["status"], body["chat_id"]) == ("awaiting_approval", chat.pk)
    assert [(a["server"], a["tool"], a["arguments"]) for a in body["approvals"]] == [("test", "wipe", {"note": "n"})]
    assert [a["id"] for a in listed.json()] == [body["approvals"][0]["approval_id"]]
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_decision")
    assert unknown.status_code == 404
    assert decided.status_code == 200, decided.content
    assert (decided.json()["status"], decided.json()["decided_by"]) == ("approved", user.pk)
    final = Message.objects.filter(chat=chat).order_by("position").last()
    assert final.content == [{"type": "text", "text": "Wiped it."}]
    assert _executions(chat) == [("wipe", "approved", False, "ask", False)]


def test_sse_shows_the_event_and_the_decision_comes_over_rest(user, key, providers):
    _server()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Not done."))
    chat = ChatFactory(owner=user)

    with platform_process() as base_url:

        async def scenario():
            events = []
            async with (
                _client(base_url, key) as client,
                aconnect_sse(client, "POST", f"/api/chats/{chat.pk}/messages", json={**BODY, "stream": True}) as source,
            ):
                async for event in source.aiter_sse():
                    events.append((event.event, json.loads(event.data)))
                    if event.event == "tool_approval_required":
                        approval_id = events[-1][1]["approval_id"]
                        await client.post(f"/api/chats/{chat.pk}/approvals/{approval_id}", json={"decision": "deny"})
            return events

        events = asyncio.run(scenario())

    kinds = [kind for kind, _ in events]
    assert kinds.index("tool_approval_required") < kinds.index("tool_approval_decided") < kinds.index("turn_done")
    decided = next(data for kind, data in events if kind == "tool_approval_decided")
    assert (decided["decision"], decided["auto"]) == ("denied", False)
    assert _executions(chat) == [("wipe", "denied", False, "ask", True)]


def test_nobody_deciding_in_time_is_an_error_result(user, key, providers):
    _server()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Timed out."))
    chat = ChatFactory(owner=user)

    with platform_process(TOOL_APPROVAL_TIMEOUT_SECONDS="1", TOOL_APPROVAL_POLL_SECONDS="0.2") as base_url:

        async def scenario():
            async with _client(base_url, key) as client:
                return await client.post(f"/api/chats/{chat.pk}/messages", json=BODY)

        assert asyncio.run(scenario()).status_code == 202
        wait_until(lambda: _roles(chat) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert _tool_results(providers, 1) == ["Error: Approval timed out: nobody approved this tool call in time."]
    assert _executions(chat) == [("wipe", "expired", True, "ask", True)]
    assert ToolApproval.objects.get().status == "expired"


@pytest.mark.skipif(not settings.REDIS_URL, reason="two processes reach each other over the Redis channel layer")
def test_a_decision_made_on_another_worker_reaches_the_waiting_turn(user, key, providers):
    _server()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]), Turn(text="Wiped."))
    chat = ChatFactory(owner=user)
    # The turn re-reads its approval only every 10 minutes: only the message over Redis can wake it in time.
    slow_poll = {"TOOL_APPROVAL_POLL_SECONDS": "600"}

    with platform_process(**slow_poll) as runner, platform_process(**slow_poll) as other:

        async def scenario():
            async with _client(runner, key) as a, _client(other, key) as b:
                waiting = await a.post(f"/api/chats/{chat.pk}/messages", json=BODY)
                approval_id = waiting.json()["approvals"][0]["approval_id"]
                return await b.post(f"/api/chats/{chat.pk}/approvals/{approval_id}", json={"decision": "approve"})

        decided = asyncio.run(scenario())
        assert decided.status_code == 200, decided.content
        wait_until(lambda: _roles(chat) == ["user", "assistant", "tool", "assistant"], seconds=30)

    assert _executions(chat) == [("wipe", "approved", False, "ask", False)]


def test_admin_lists_approvals_as_a_read_only_record(admin_client, user):
    from datetime import timedelta

    from django.utils import timezone

    chat = ChatFactory(owner=user)
    approval = ToolApproval.objects.create(
        chat=chat,
        turn_id="t",
        tool_call_id="call_1",
        server="files",
        tool="write_file",
        arguments={"path": "x"},
        status="denied",
        decided_by=user,
        decided_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=10),
    )

    listing = admin_client.get("/admin/chats/toolapproval/")
    detail = admin_client.get(f"/admin/chats/toolapproval/{approval.pk}/change/")
    changed = admin_client.post(f"/admin/chats/toolapproval/{approval.pk}/change/", {"status": "approved"})

    assert listing.status_code == 200
    assert "files__write_file (denied)" in listing.content.decode()
    assert detail.status_code == 200
    assert changed.status_code == 403
    approval.refresh_from_db()
    assert approval.status == "denied"


def test_64_turns_waiting_for_approval_hold_no_connection_with_a_pool_of_two(user, key, providers):
    # given 64 chats whose turns each call a tool that asks, and a pool of at most 2 database connections
    _server()
    providers["openai"].push(*[Turn(tool_calls=[ToolCallSpec("test__wipe", {"note": "n"})]) for _ in range(64)])
    providers["openai"].push(*[Turn(text="Done.") for _ in range(64)])
    chats = [ChatFactory(owner=user) for _ in range(64)]
    pool = {"DATABASE_POOL_MAX_SIZE": "2", "DATABASE_POOL_MIN_SIZE": "1", "RATE_LIMIT_PER_MINUTE": "10000"}

    with platform_process(**pool) as base_url:

        async def scenario():
            async with httpx.AsyncClient(
                base_url=base_url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
                limits=httpx.Limits(max_connections=64),
            ) as client:
                # when all 64 wait for a decision at once, then all are decided at once (half of them denied)
                waiting = await asyncio.gather(
                    *(client.post(f"/api/chats/{chat.pk}/messages", json=BODY) for chat in chats)
                )
                listing = await client.get("/api/chats")
                decided = await asyncio.gather(
                    *(
                        client.post(
                            f"/api/chats/{chat.pk}/approvals/{response.json()['approvals'][0]['approval_id']}",
                            json={"decision": "approve" if index % 2 else "deny"},
                        )
                        for index, (chat, response) in enumerate(zip(chats, waiting, strict=True))
                    )
                )
                return waiting, listing, decided

        waiting, listing, decided = asyncio.run(scenario())
        wait_until(lambda: Message.objects.filter(chat__in=chats).count() == 64 * 4, seconds=60)

    # then every request answered without a 5xx, and every turn finished with its decision
    assert [response.status_code for response in waiting] == [202] * 64, {r.text for r in waiting}
    assert listing.status_code == 200
    assert [response.status_code for response in decided] == [200] * 64
    decisions = ToolExecution.objects.values_list("approval_decision", flat=True)
    assert sorted(decisions) == ["approved"] * 32 + ["denied"] * 32
    assert not Chat.objects.filter(pk__in=[chat.pk for chat in chats]).exclude(turn_id="").exists()
