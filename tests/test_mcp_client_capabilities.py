"""The host as an MCP client beyond tools: progress, server logs and the log level, cancellation, roots.

Real servers throughout: our test server (tests/mcp/server.py) over stdio, and the reference
``server-everything`` over npx. The host reads rows from its own thread, so rows are committed.
"""

import asyncio
import json
import shutil

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from accounts.services import api_key_create
from chats.events import ToolCallFinished, ToolProgress
from chats.services.turns.progress import MIN_INTERVAL, ProgressRelay
from mcp_servers.config import ServerSpec
from mcp_servers.config_io import ConfigFileError, mcp_config_export, mcp_config_parse
from mcp_servers.host import get_host
from mcp_servers.models import McpServer, McpServerLogEntry
from mcp_servers.services import mcp_server_save, mcp_servers_import

from .conftest import client_for, stdio_test_server, wait_until, ws_frames_until, ws_open
from .factories import ChatFactory, UserFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

NPX = shutil.which("npx")
NODE_SERVERS_VERSION = "2026.8.31"
SECRET = "sekrit-token-4242"


def _server(env=None, **fields):
    """The test server with its client-feature tools (progress, cancellation, logging, roots)."""
    return stdio_test_server(env={"TEST_SERVER_CLIENT_FEATURES": "1", **(env or {})}, **fields)


def _message(text="Go"):
    return {"type": "message", "message": text, "provider": "openai", "model": MODELS["openai"]}


# --- progress ------------------------------------------------------------------------------------


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
async def test_progress_of_a_long_running_tool_reaches_the_websocket_in_order(user, providers):
    # given server-everything, whose long-running operation reports progress at each step
    await sync_to_async(
        lambda: McpServer.objects.create(
            name="everything",
            transport="stdio",
            command=NPX,
            timeout_seconds=60,
            args=["-y", f"@modelcontextprotocol/server-everything@{NODE_SERVERS_VERSION}"],
        )
    )()
    await get_host().await_ready(120)
    call = ToolCallSpec("everything__trigger-long-running-operation", {"duration": 1, "steps": 4})
    providers["openai"].push(Turn(tool_calls=[call]), Turn(text="Done."))
    chat = await sync_to_async(ChatFactory)(owner=user)
    key = await sync_to_async(lambda: api_key_create(owner=user, name="ws").secret)()
    communicator = (await ws_open(chat.pk, key))[0]

    # when a turn calls it
    await communicator.send_json_to(_message())
    frames = await ws_frames_until(communicator, lambda frame: frame["type"] == "turn_done")
    await communicator.disconnect()

    # then its progress came as tool_progress frames of that call, in order, before it finished
    started = next(frame for frame in frames if frame["type"] == "tool_call_started")
    progress = [frame for frame in frames if frame["type"] == "tool_progress"]
    assert [(p["tool_call_id"], p["progress"], p["total"]) for p in progress] == [
        (started["id"], 1, 4),
        (started["id"], 2, 4),
        (started["id"], 3, 4),
        (started["id"], 4, 4),
    ]
    types = [frame["type"] for frame in frames]
    assert types.index("tool_call_started") < types.index("tool_progress")
    last_progress = len(types) - 1 - types[::-1].index("tool_progress")
    assert last_progress < types.index("tool_call_finished")
    assert frames[-1]["success"] is True


async def test_progress_with_messages_from_the_test_server_through_a_turn(user, providers):
    await sync_to_async(lambda: _server(timeout_seconds=20).save())()
    await get_host().await_ready(20)
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__progress", {"steps": 3, "delay": 0.3})]), Turn(text="ok")
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    key = await sync_to_async(lambda: api_key_create(owner=user, name="ws").secret)()
    communicator = (await ws_open(chat.pk, key))[0]

    await communicator.send_json_to(_message())
    frames = await ws_frames_until(communicator, lambda frame: frame["type"] == "turn_done")
    await communicator.disconnect()

    progress = [(f["progress"], f["total"], f["message"]) for f in frames if f["type"] == "tool_progress"]
    assert progress == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


async def test_progress_is_rate_limited_the_latest_wins_and_none_comes_after_the_call():
    # given a relay on this loop, and a server reporting 30 steps at once
    events = []
    relay = ProgressRelay(asyncio.get_running_loop(), events.append)
    report = relay.reporter("call-1")
    for step in range(1, 31):
        await report(step, 30, f"step {step}")
    await asyncio.sleep(0)  # the notices hop onto this loop

    # then the first goes out at once, the others wait and the newest of them replaces the rest
    assert [event.progress for event in events] == [1]
    await asyncio.sleep(MIN_INTERVAL * 3)
    assert [(event.progress, event.message) for event in events] == [(1, "step 1"), (30, "step 30")]

    # and once the call has finished, nothing more is emitted for it
    await report(31, 30, "late")
    relay.finish("call-1")
    await asyncio.sleep(MIN_INTERVAL * 3)
    assert len(events) == 2
    assert all(isinstance(event, ToolProgress) and event.tool_call_id == "call-1" for event in events)
    assert not any(isinstance(event, ToolCallFinished) for event in events)


# --- logging -------------------------------------------------------------------------------------


def _logging_server(**fields):
    server = _server(timeout_seconds=10, env={"API_TOKEN": SECRET}, **fields)
    server.save()
    get_host().ready(15)
    return server


def _logged():
    return list(McpServerLogEntry.objects.filter(server="test").order_by("id").values_list("level", "logger", "data"))


def test_log_messages_at_the_level_asked_are_stored_redacted():
    # given a 2026-07-28 connection asking for warnings and worse
    _logging_server(log_level="warning")

    assert get_host().call_tool("test__log_levels", {"text": "hi"}).text == "logged 8"

    # then the server sent only those, and they are stored without the server's secret
    rows = wait_until(lambda: len(_logged()) == 5 and _logged())
    assert [(level, logger) for level, logger, _data in rows] == [
        ("warning", "t"),
        ("error", "t"),
        ("critical", "t"),
        ("alert", "t"),
        ("emergency", "t"),
    ]
    assert rows[0][2] == {"text": "warning: hi", "token": "***"}
    assert SECRET not in json.dumps([data for _level, _logger, data in rows])


def test_a_modern_server_logs_nothing_until_asked_and_a_new_level_needs_no_reconnect():
    server = _logging_server()
    host = get_host()
    pid = host.call_tool("test__pid", {}).text
    host.call_tool("test__log_levels", {"text": "unasked"})

    server.log_level = "error"
    mcp_server_save(server=server)
    wait_until(lambda: host.call_tool("test__log_levels", {"text": "asked"}) and len(_logged()) >= 4)

    # one connection writes its log in order: had the first call logged anything, it would come first
    assert [(level, data["text"]) for level, _logger, data in _logged()][:4] == [
        ("error", "error: asked"),
        ("critical", "critical: asked"),
        ("alert", "alert: asked"),
        ("emergency", "emergency: asked"),
    ]
    assert host.call_tool("test__pid", {}).text == pid


def test_the_log_is_capped_per_server_keeping_the_newest(settings):
    settings.MCP_SERVER_LOG_KEEP = 3
    McpServerLogEntry.objects.create(server="other", level="info", data="not ours")
    _logging_server(log_level="debug")

    for round_number in range(3):
        get_host().call_tool("test__log_levels", {"text": f"round {round_number}"})

    newest = ["critical: round 2", "alert: round 2", "emergency: round 2"]
    # once the last round is written, only its last three are left
    wait_until(lambda: [data["text"] for _level, _logger, data in _logged()] == newest)
    assert McpServerLogEntry.objects.filter(server="other").count() == 1


def test_a_handshake_era_server_is_sent_the_level_and_a_change_of_it_without_reconnecting(settings):
    settings.MCP_PROTOCOL_MODE = "legacy"
    server = _logging_server(log_level="error")
    host = get_host()
    pid = host.call_tool("test__pid", {}).text
    assert json.loads(host.call_tool("test__client_settings", {}).text)["level"] == "error"

    server.log_level = "debug"
    mcp_server_save(server=server)

    wait_until(lambda: json.loads(host.call_tool("test__client_settings", {}).text)["level"] == "debug")
    assert host.call_tool("test__pid", {}).text == pid  # the same process: no reconnect
    assert host.call_tool("test__log_levels", {"text": "all"}).text == "logged 8"
    wait_until(lambda: len(_logged()) == 8)


def test_the_fingerprint_leaves_out_the_log_level_and_the_roots_but_not_whether_there_are_roots():
    base = ServerSpec(name="s", transport="stdio", command="x")
    one_root = ServerSpec(name="s", transport="stdio", command="x", roots=(("file:///a", ""),))

    assert ServerSpec(name="s", transport="stdio", command="x", log_level="debug").with_fingerprint().fingerprint == (
        base.with_fingerprint().fingerprint
    )
    other_root = ServerSpec(name="s", transport="stdio", command="x", roots=(("file:///b", "b"),))
    assert one_root.with_fingerprint().fingerprint == other_root.with_fingerprint().fingerprint
    assert one_root.with_fingerprint().fingerprint != base.with_fingerprint().fingerprint


# --- the log for staff: API and admin ------------------------------------------------------------


@pytest.fixture
def staff_api():
    return client_for(UserFactory(username="root", is_staff=True, is_superuser=True))


@pytest.fixture
def logged_rows():
    McpServer.objects.create(name="test", transport="stdio", command="true", enabled=False)
    levels = ["debug", "info", "warning", "error", "critical"]
    return [
        McpServerLogEntry.objects.create(server="test", level=level, logger="app", data={"n": n})
        for n, level in enumerate(levels)
    ]


def test_the_logs_endpoint_lists_newest_first_with_a_level_floor_and_a_limit(staff_api, logged_rows):
    everything = staff_api.get("/api/mcp/servers/test/logs")
    serious = staff_api.get("/api/mcp/servers/test/logs", {"level": "error", "limit": 5})
    latest = staff_api.get("/api/mcp/servers/test/logs", {"limit": 2})

    assert everything.status_code == 200
    assert [entry["data"]["n"] for entry in everything.json()] == [4, 3, 2, 1, 0]
    assert set(everything.json()[0]) == {"id", "level", "logger", "data", "created_at"}
    assert [(entry["level"], entry["logger"]) for entry in serious.json()] == [("critical", "app"), ("error", "app")]
    assert [entry["data"]["n"] for entry in latest.json()] == [4, 3]


def test_the_logs_endpoint_is_for_staff_and_known_servers_only(api, staff_api, logged_rows):
    assert api.get("/api/mcp/servers/test/logs").status_code == 403
    missing = staff_api.get("/api/mcp/servers/nope/logs")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_mcp_server"
    bad_level = staff_api.get("/api/mcp/servers/test/logs", {"level": "loud"})
    bad_limit = staff_api.get("/api/mcp/servers/test/logs", {"limit": 0})
    assert (bad_level.status_code, bad_limit.status_code) == (400, 400)
    assert set(bad_level.json()["error"]["details"]) == {"level"}
    assert set(bad_limit.json()["error"]["details"]) == {"limit"}


def test_admin_shows_the_recent_log_on_the_server_and_the_log_itself(client, logged_rows):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    server = McpServer.objects.get(name="test")

    change = client.get(reverse("admin:mcp_servers_mcpserver_change", args=[server.pk])).content.decode()
    changelist = client.get(reverse("admin:mcp_servers_mcpserverlogentry_changelist"), {"level": "error"})
    entry = client.get(reverse("admin:mcp_servers_mcpserverlogentry_change", args=[logged_rows[0].pk]))

    assert "recent log" in change.lower()
    assert change.index("{&quot;n&quot;: 4}") < change.index("{&quot;n&quot;: 0}")  # newest first
    assert changelist.status_code == 200
    assert "{&quot;n&quot;: 3}" in changelist.content.decode()
    assert "{&quot;n&quot;: 4}" not in changelist.content.decode()
    assert entry.status_code == 200  # read-only view
    assert client.get(reverse("admin:mcp_servers_mcpserverlogentry_add")).status_code == 403


# --- cancellation --------------------------------------------------------------------------------


async def test_cancelling_a_turn_tells_the_server_to_cancel_the_running_call(user, providers, tmp_path):
    # given a turn running a call that waits long, on a server that notes a cancelled call in a file
    await sync_to_async(lambda: _server(timeout_seconds=30).save())()
    host = get_host()
    await host.await_ready(20)
    pid = (await host.acall_tool("test__pid", {})).text
    marker = tmp_path / "cancelled"
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__interruptible", {"seconds": 25, "marker": str(marker)})])
    )
    chat = await sync_to_async(ChatFactory)(owner=user)
    key = await sync_to_async(lambda: api_key_create(owner=user, name="ws").secret)()
    communicator = (await ws_open(chat.pk, key))[0]
    await communicator.send_json_to(_message())
    await ws_frames_until(communicator, lambda frame: frame["type"] == "tool_call_started")

    # when the user cancels the turn
    await communicator.send_json_to({"type": "cancel"})
    frames = await ws_frames_until(communicator, lambda frame: frame["type"] == "turn_done")
    await communicator.disconnect()

    # then the server was told (notifications/cancelled) and stopped the call, and kept running
    assert frames[-1]["finish_reason"] == "cancelled"
    await sync_to_async(wait_until)(marker.exists)
    assert marker.read_text() == f"cancelled in {pid}"
    assert (await host.acall_tool("test__pid", {})).text == pid


# --- roots ---------------------------------------------------------------------------------------


def _roots(host):
    return json.loads(host.call_tool("test__roots", {}).text)


def test_roots_are_answered_and_an_edit_is_announced_without_reconnecting(settings):
    settings.MCP_PROTOCOL_MODE = "legacy"  # roots/list and its list_changed notice are 2025-era
    server = _server(timeout_seconds=10, roots=[{"uri": "file:///srv/data", "name": "data"}])
    mcp_server_save(server=server)
    host = get_host()
    host.ready(15)
    pid = host.call_tool("test__pid", {}).text

    assert _roots(host) == [{"uri": "file:///srv/data", "name": "data"}]
    assert json.loads(host.call_tool("test__client_settings", {}).text)["roots_changed"] == 0

    server.roots = [{"uri": "file:///srv/data"}, {"uri": "file:///srv/more", "name": "more"}]
    mcp_server_save(server=server)

    wait_until(lambda: json.loads(host.call_tool("test__client_settings", {}).text)["roots_changed"] == 1)
    assert _roots(host) == [{"uri": "file:///srv/data", "name": None}, {"uri": "file:///srv/more", "name": "more"}]
    assert host.call_tool("test__pid", {}).text == pid


def test_a_server_without_roots_is_not_offered_the_capability(settings):
    settings.MCP_PROTOCOL_MODE = "legacy"
    _server(timeout_seconds=10).save()
    host = get_host()
    host.ready(15)

    result = host.call_tool("test__roots", {})

    assert result.is_error is True


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
def test_server_everything_sees_the_roots(settings):
    McpServer.objects.create(
        name="everything",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        args=["-y", f"@modelcontextprotocol/server-everything@{NODE_SERVERS_VERSION}"],
        roots=[{"uri": "file:///srv/project", "name": "project"}],
    )
    host = get_host()
    host.ready(120)

    listing = host.call_tool("everything__get-roots-list", {})

    assert listing.is_error is False
    assert "file:///srv/project" in listing.text


def test_roots_round_trip_through_the_config_file():
    data = {"mcpServers": {"files": {"command": "x", "roots": [{"uri": "file:///srv", "name": "srv"}]}}}

    report = mcp_servers_import(servers=mcp_config_parse(data))

    assert report.created == ("files",)
    assert McpServer.objects.get(name="files").roots == [{"uri": "file:///srv", "name": "srv"}]
    exported = mcp_config_export(McpServer.objects.prefetch_related("allowed_users", "allowed_groups"))
    assert exported["mcpServers"]["files"]["roots"] == [{"uri": "file:///srv", "name": "srv"}]


@pytest.mark.parametrize(
    "roots",
    [
        "file:///srv",
        [{"uri": "https://example.com"}],
        [{"uri": "file:///srv", "label": "x"}],
    ],
)
def test_bad_roots_in_a_config_file_are_refused(roots):
    data = {"mcpServers": {"files": {"command": "x", "roots": roots}}}

    with pytest.raises(ConfigFileError, match=r"Server 'files': roots: "):
        mcp_config_parse(data)


# --- the chat page -------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_chat_page_shows_a_running_calls_progress_in_its_tool_card(user, providers):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from playwright.sync_api import expect, sync_playwright

    from .conftest import platform_process

    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    _server(timeout_seconds=30).save()
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("test__progress", {"steps": 3, "delay": 1.5})]), Turn(text="All done.")
    )

    with platform_process() as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{base_url}/login/?next=/")
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            page.click("#new-chat")
            expect(page.locator("#input")).to_be_enabled(timeout=15_000)
            page.select_option("#provider", "openai")
            expect(page.locator(f"#model option[value={MODELS['openai']}]")).to_have_count(1)
            page.select_option("#model", MODELS["openai"])
            page.fill("#input", "Take your time")
            page.press("#input", "Enter")

            # while the call runs, its card has a bar that fills as the server reports
            bar = page.locator(".tool.running .progress progress")
            expect(bar).to_have_attribute("max", "3", timeout=30_000)
            expect(page.locator(".tool.running .progress-message")).to_have_text("step 2 of 3", timeout=15_000)
            expect(bar).to_have_attribute("value", "2")
            # and once it is done, the bar gives way to the result
            expect(page.locator(".tool.ok")).to_have_count(1, timeout=30_000)
            expect(page.locator(".tool .progress")).to_have_count(0)
        finally:
            browser.close()
