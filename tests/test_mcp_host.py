"""The MCP host against real MCP server processes: the test server (stdio, Streamable HTTP, SSE)
and the reference servers (filesystem and everything over npx, mcp-server-time from PyPI)."""

import asyncio
import io
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from mcp_servers.config import ServerSpec
from mcp_servers.host import McpHost, get_host
from mcp_servers.models import McpServer
from mcp_servers.services import mcp_server_delete, mcp_server_save

from .conftest import http_test_server, stdio_test_server, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NPX = shutil.which("npx")
NODE_SERVERS_VERSION = "2026.8.31"
needs_npx = pytest.mark.skipif(NPX is None, reason="npx is not installed")


def _status(host, name):
    return {status.name: status for status in host.statuses()}[name]


def _tool_names(host):
    return [tool.namespaced_name for tool in host.tools()]


def test_stdio_server_connects_lists_and_calls():
    stdio_test_server(timeout_seconds=10).save()
    host = get_host()
    host.ready(15)

    status = _status(host, "test")
    assert status.status == "connected"
    assert status.server_name == "platform-test-server"
    assert status.protocol_version
    assert status.instructions == "A server for the platform's tests."
    assert "test__echo" in _tool_names(host)

    echo = host.call_tool("test__echo", {"text": "hello"})
    assert echo.is_error is False
    assert echo.text == "hello"
    assert echo.server == "test"
    assert echo.tool == "echo"

    added = host.call_tool("test__add", {"a": 2, "b": 40})
    assert added.structured_content == {"total": 42, "operands": [2, 40]}

    failed = host.call_tool("test__fail", {"message": "boom"})
    assert failed.is_error is True
    assert "boom" in failed.text

    bad_args = host.call_tool("test__add", {"a": "not a number"})
    assert bad_args.is_error is True

    unknown = host.call_tool("test__nope", {})
    assert unknown.is_error is True
    assert unknown.text == "Unknown tool 'test__nope'"

    after = _status(host, "test")
    assert after.calls == 4  # the unknown tool never reached the server
    assert after.errors == 2


def test_slow_tool_times_out_as_an_error_result_and_the_connection_survives():
    stdio_test_server(timeout_seconds=1).save()
    host = get_host()
    host.ready(15)

    started = time.monotonic()
    result = host.call_tool("test__slow", {"seconds": 5})
    elapsed = time.monotonic() - started

    assert result.is_error is True
    assert "timed out after 1s" in result.text
    assert elapsed < 4.5  # the call did not wait for the tool
    assert host.call_tool("test__echo", {"text": "still here"}).text == "still here"
    assert _status(host, "test").status == "connected"


async def test_calls_in_one_round_run_concurrently():
    await McpServer.objects.acreate(**_fields(stdio_test_server(timeout_seconds=10)))
    host = get_host()
    await host.await_ready(15)

    # each call returns "met" only if all five are in flight at the same time on the server
    results = await asyncio.gather(
        *(host.acall_tool("test__rendezvous", {"group": "g", "n": 5, "wait": 5}) for _ in range(5))
    )

    assert [result.text for result in results] == ["met"] * 5


def _fields(server: McpServer) -> dict:
    return {f.name: getattr(server, f.name) for f in McpServer._meta.fields if f.name != "id"}


def test_tool_list_change_is_picked_up_without_restart():
    stdio_test_server(timeout_seconds=10).save()
    host = get_host()
    host.ready(15)
    assert "test__extra" not in _tool_names(host)

    assert host.call_tool("test__toggle_extra", {}).text == "added"
    wait_until(lambda: "test__extra" in _tool_names(host))
    assert host.call_tool("test__extra", {"x": 4}).text == "40"

    assert host.call_tool("test__toggle_extra", {}).text == "removed"
    wait_until(lambda: "test__extra" not in _tool_names(host))


def test_handshake_era_connection_follows_list_changed_notifications(settings):
    settings.MCP_PROTOCOL_MODE = "legacy"
    stdio_test_server(timeout_seconds=10).save()
    host = get_host()
    host.ready(15)
    assert _status(host, "test").protocol_version == "2025-11-25"

    assert host.call_tool("test__toggle_extra", {}).text == "added"

    wait_until(lambda: "test__extra" in _tool_names(host))


def test_env_references_are_expanded_at_connect_time(monkeypatch):
    monkeypatch.setenv("PLATFORM_TEST_GREETING", "bonjour")
    stdio_test_server(env={"GREETING": "${PLATFORM_TEST_GREETING}", "PLAIN": "x"}).save()
    host = get_host()
    host.ready(15)

    assert host.call_tool("test__env", {"name": "GREETING"}).text == "bonjour"
    # the child gets only what the row configures (plus the SDK's safe defaults), not our environment
    assert host.call_tool("test__env", {"name": "PLATFORM_TEST_GREETING"}).text == "<unset>"
    assert host.call_tool("test__env", {"name": "DJANGO_SETTINGS_MODULE"}).text == "<unset>"


def test_missing_env_variable_is_a_clear_error_and_does_not_affect_others():
    stdio_test_server(name="broken", env={"TOKEN": "${PLATFORM_TEST_NOT_SET_ANYWHERE}"}).save()
    stdio_test_server(name="fine").save()
    host = get_host()
    host.ready(15)

    broken = wait_until(lambda: _status(host, "broken").status == "error" and _status(host, "broken"))
    assert "PLATFORM_TEST_NOT_SET_ANYWHERE" in broken.last_error
    assert _status(host, "fine").status == "connected"
    result = host.call_tool("fine__echo", {"text": "ok"})
    assert result.text == "ok"


def test_server_that_cannot_start_shows_error_with_reason():
    McpServer.objects.create(name="ghost", transport="stdio", command="/nonexistent/mcp-server-binary")
    host = get_host()

    status = wait_until(lambda: _status(host, "ghost").status == "error" and _status(host, "ghost"))
    assert "nonexistent" in status.last_error or "No such file" in status.last_error
    result = host.call_tool("ghost__anything", {})
    assert result.is_error is True


def test_killed_server_process_comes_back_by_itself():
    stdio_test_server(timeout_seconds=5).save()
    host = get_host()
    host.ready(15)
    first_pid = int(host.call_tool("test__pid", {}).text)

    os.kill(first_pid, signal.SIGKILL)
    started = time.monotonic()
    result = host.call_tool("test__echo", {"text": "anyone?"})
    elapsed = time.monotonic() - started

    # the next call fails promptly (not after hanging), as an error result
    if result.is_error:
        assert elapsed < 5
    # then the server is restarted and works again, in a new process
    new_pid = wait_until(lambda: _pid_if_connected(host, first_pid), seconds=20)
    assert new_pid != first_pid
    assert host.call_tool("test__echo", {"text": "back"}).text == "back"


def _pid_if_connected(host, old_pid):
    result = host.call_tool("test__pid", {})
    if result.is_error:
        return None
    pid = int(result.text)
    return pid if pid != old_pid else None


def test_streamable_http_server_with_env_expanded_url(monkeypatch):
    with http_test_server("http") as port:
        monkeypatch.setenv("PLATFORM_TEST_MCP_PORT", str(port))
        McpServer.objects.create(
            name="remote",
            transport="streamable_http",
            url="http://127.0.0.1:${PLATFORM_TEST_MCP_PORT}/mcp",
            headers={"X-Trace": "tests"},
        )
        host = get_host()
        host.ready(15)

        assert _status(host, "remote").status == "connected"
        assert host.call_tool("remote__echo", {"text": "over http"}).text == "over http"
        assert host.call_tool("remote__add", {"a": 1, "b": 2}).structured_content["total"] == 3


def test_legacy_sse_server():
    with http_test_server("sse") as port:
        McpServer.objects.create(name="legacy", transport="sse", url=f"http://127.0.0.1:{port}/sse")
        host = get_host()
        host.ready(15)

        status = _status(host, "legacy")
        assert status.status == "connected", status.last_error
        assert host.call_tool("legacy__echo", {"text": "over sse"}).text == "over sse"


def test_two_servers_with_the_same_tools_are_routed_apart():
    stdio_test_server(name="alpha").save()
    stdio_test_server(name="beta").save()
    host = get_host()
    host.ready(15)

    names = _tool_names(host)
    long_names = [name for name in names if "a_tool_with" in name]
    assert {"alpha__echo", "beta__echo"} <= set(names)
    assert len(long_names) == 2
    assert all(len(name) <= 64 for name in long_names)
    assert host.call_tool("alpha__pid", {}).text != host.call_tool("beta__pid", {}).text
    assert {host.call_tool(name, {}).text for name in long_names} == {"long"}


def test_allowlist_filters_tools():
    stdio_test_server(tool_allowlist=["echo", "add"]).save()
    host = get_host()
    host.ready(15)

    assert sorted(_tool_names(host)) == ["test__add", "test__echo"]
    assert host.call_tool("test__pid", {}).is_error is True


def test_saving_disabling_and_deleting_take_effect_on_the_running_host():
    server = stdio_test_server(env={"GREETING": "one"})
    mcp_server_save(server=server)
    host = get_host()
    host.ready(15)
    wait_until(lambda: host.call_tool("test__env", {"name": "GREETING"}).text == "one")

    server.env = {"GREETING": "two"}
    mcp_server_save(server=server)
    wait_until(lambda: host.call_tool("test__env", {"name": "GREETING"}).text == "two")

    server.enabled = False
    mcp_server_save(server=server)
    wait_until(lambda: _status(host, "test").status == "disabled")
    assert _tool_names(host) == []

    mcp_server_delete(server=server)
    wait_until(lambda: "test" not in {status.name for status in host.statuses()})


def test_a_display_change_does_not_reconnect():
    server = stdio_test_server()
    mcp_server_save(server=server)
    host = get_host()
    host.ready(15)
    pid = host.call_tool("test__pid", {}).text

    server.display_name = "Renamed for people"
    mcp_server_save(server=server)
    changed = host.reload()

    assert changed == []
    assert host.call_tool("test__pid", {}).text == pid


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL: hosts in other processes follow over Redis")
def test_a_second_host_follows_changes_over_the_redis_channel_layer():
    server = stdio_test_server(env={"GREETING": "one"})
    server.save()
    other = McpHost()  # as another worker process would have
    try:
        mine = get_host()
        for host in (mine, other):
            host.ready(15)
            assert host.listening.wait(10)
        assert other.call_tool("test__env", {"name": "GREETING"}).text == "one"

        server.env = {"GREETING": "two"}
        mcp_server_save(server=server)

        for host in (mine, other):
            wait_until(lambda host=host: host.call_tool("test__env", {"name": "GREETING"}).text == "two")
    finally:
        other.close()


# --- the reference servers ---------------------------------------------------------------


@needs_npx
def test_filesystem_server_writes_reads_and_refuses_outside_the_sandbox(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    McpServer.objects.create(
        name="files",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        args=["-y", f"@modelcontextprotocol/server-filesystem@{NODE_SERVERS_VERSION}", str(sandbox)],
    )
    host = get_host()
    host.ready(120)
    assert _status(host, "files").status == "connected", _status(host, "files").last_error

    written = host.call_tool("files__write_file", {"path": str(sandbox / "note.txt"), "content": "hello files"})
    read = host.call_tool("files__read_text_file", {"path": str(sandbox / "note.txt")})
    outside = host.call_tool("files__read_text_file", {"path": "/etc/hostname"})

    assert written.is_error is False
    assert (sandbox / "note.txt").read_text() == "hello files"
    assert read.text == "hello files"
    assert outside.is_error is True
    assert "denied" in outside.text.lower() or "outside" in outside.text.lower()


@needs_npx
def test_everything_server_structured_content_resources_and_prompts():
    McpServer.objects.create(
        name="everything",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        args=["-y", f"@modelcontextprotocol/server-everything@{NODE_SERVERS_VERSION}"],
    )
    host = get_host()
    host.ready(120)
    assert _status(host, "everything").status == "connected", _status(host, "everything").last_error

    weather = host.call_tool("everything__get-structured-content", {"location": "Chicago"})
    assert weather.is_error is False
    assert set(weather.structured_content) == {"temperature", "conditions", "humidity"}

    summed = host.call_tool("everything__get-sum", {"a": 2, "b": 3})
    assert "5" in summed.text

    async def resources(client):
        listing = await client.list_resources()
        first = listing.resources[0]
        read = await client.read_resource(first.uri)
        return first.uri, read.contents

    uri, contents = asyncio.run(_on_host(host, "everything", "resources", resources))
    assert str(uri)
    assert contents

    async def prompts(client):
        return [prompt.name for prompt in (await client.list_prompts()).prompts]

    assert asyncio.run(_on_host(host, "everything", "prompts", prompts))


async def _on_host(host, server, what, call):
    return await host.arequest(server, what, call)


def test_time_server_from_pypi():
    McpServer.objects.create(
        name="time",
        transport="stdio",
        command=str(Path(sys.executable).parent / "mcp-server-time"),
    )
    host = get_host()
    host.ready(30)

    result = host.call_tool("time__get_current_time", {"timezone": "UTC"})

    assert result.is_error is False, result.text
    assert "UTC" in result.text
    assert host.call_tool("time__get_current_time", {"timezone": "Not/AZone"}).is_error is True


def test_default_servers_work_out_of_the_box(monkeypatch, tmp_path, settings):
    # as under `make run`, the venv's console scripts are on PATH
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    settings.MCP_WORKSPACE_DIR = str(tmp_path / "workspace")
    first, second = io.StringIO(), io.StringIO()

    call_command("ensure_default_mcp_servers", stdout=first)
    call_command("ensure_default_mcp_servers", stdout=second)

    assert "time" in first.getvalue()
    assert second.getvalue().strip() == "Default MCP servers already configured."
    assert McpServer.objects.get(name="filesystem").enabled is (NPX is not None)
    host = get_host()
    host.ready(120)
    assert host.call_tool("time__get_current_time", {"timezone": "Europe/Paris"}).is_error is False
    if NPX is not None:
        target = tmp_path / "workspace" / "hello.txt"
        written = host.call_tool("filesystem__write_file", {"path": str(target), "content": "hi"})
        assert written.is_error is False, written.text
        assert target.read_text() == "hi"


# --- a server's secrets stay out of logs and errors ------------------------------------------------

TOKEN = "tok-4f9a-very-secret"


def _stderr_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "mcp_servers.stderr"]


def test_stderr_is_logged_with_secrets_redacted_and_once_across_restarts(monkeypatch, caplog):
    # given a server that prints its token (configured as a ${VAR} reference) on every start
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PLATFORM_TEST_TOKEN", TOKEN)
    stdio_test_server(env={"API_TOKEN": "${PLATFORM_TEST_TOKEN}", "TEST_SERVER_PRINT_TOKEN": "1"}).save()
    host = get_host()
    host.ready(15)
    pids = {host.call_tool("test__pid", {}).text}

    # when it is restarted twice
    for _ in range(2):
        host.reconnect("test")
        host.ready(15)
        pids.add(host.call_tool("test__pid", {}).text)
    time.sleep(0.3)  # the last start-up line is read alongside the calls

    # then its start-up line was logged once, redacted, and the token is nowhere in the log
    assert len(pids) == 3
    assert host.call_tool("test__env", {"name": "API_TOKEN"}).text == TOKEN  # the server did get it
    assert _stderr_lines(caplog) == ["MCP server test stderr: starting with API_TOKEN=***"]
    assert TOKEN not in caplog.text


def test_stderr_beyond_sixty_lines_a_minute_is_not_logged(caplog):
    caplog.set_level(logging.INFO)
    stdio_test_server(env={"TEST_SERVER_STDERR_LINES": "100"}).save()
    get_host().ready(15)

    wait_until(lambda: len(_stderr_lines(caplog)) >= 60)
    time.sleep(0.3)

    assert _stderr_lines(caplog) == [f"MCP server test stderr: noise {number}" for number in range(60)]


def test_last_error_log_and_probe_redact_secrets(caplog, settings):
    # given a server whose failure quotes one of its env values
    settings.MCP_RESTART_BACKOFF_INITIAL = 60
    caplog.set_level(logging.INFO)
    server = McpServer.objects.create(
        name="ghost", transport="stdio", command=f"/nonexistent/{TOKEN}", env={"API_TOKEN": TOKEN}
    )
    host = get_host()

    # when it fails to start, and when staff test it
    status = wait_until(lambda: _status(host, "ghost").status == "error" and _status(host, "ghost"))
    probe = host.probe(ServerSpec.from_row(server))

    # then the error says what happened, without the value
    expected = "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/***'"
    assert status.last_error == expected
    assert probe["error"] == expected
    assert f"MCP server ghost: {expected}" in [record.getMessage() for record in caplog.records]
    assert TOKEN not in caplog.text
