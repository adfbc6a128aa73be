"""Per-user MCP servers: ``{{user.id}}`` / ``{{user.username}}`` in a server's configuration give each user
a connection of their own (real server processes), started on first use, closed when idle or over the cap."""

import os
import shutil
from pathlib import Path

import pytest

from mcp_servers.config import ConfigError, ServerSpec, UserContext
from mcp_servers.host import get_host
from mcp_servers.models import McpServer, McpServerHealthSnapshot
from mcp_servers.services import mcp_health_snapshot

from .conftest import stdio_test_server, wait_until
from .factories import ChatFactory, UserFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

NPX = shutil.which("npx")
NODE_SERVERS_VERSION = "2026.8.31"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(host, user) -> int:
    result = host.call_tool("test__pid", {}, user=user)
    assert result.is_error is False, result.text
    return int(result.text)


@pytest.fixture
def per_user_server():
    """The test server with the username in its env: one process per user."""
    server = stdio_test_server(timeout_seconds=10, env={"WHO": "{{user.username}}"})
    server.save()
    return server


# --- placeholders --------------------------------------------------------------------------------


def _spec(**fields) -> ServerSpec:
    return ServerSpec(name="files", transport="stdio", command="npx", **fields).with_fingerprint()


def test_placeholders_are_filled_in_everywhere_and_the_url_is_percent_encoded():
    spec = ServerSpec(
        name="docs",
        transport="streamable_http",
        url="https://mcp.example.com/{{user.username}}/mcp?id={{user.id}}",
        headers=(("X-User", "{{user.username}}"),),
    ).with_fingerprint()

    filled = spec.for_user(UserContext(id=7, username="ann+b@x"))

    assert spec.per_user is True
    assert filled.url == "https://mcp.example.com/ann%2Bb%40x/mcp?id=7"
    assert filled.headers == (("X-User", "ann+b@x"),)
    assert filled.fingerprint != spec.fingerprint


def test_a_server_without_placeholders_is_shared():
    assert _spec(args=("-y", "server", "/srv/{{user}}"), env=(("X", "{{USER_ID}}"),)).per_user is False


@pytest.mark.parametrize(
    ("args", "cwd", "wanted"),
    [
        (("-y", "pkg", "workspace/{{user.id}}"), "", ["{base}/workspace/42"]),
        (("/srv/{{user.username}}/notes",), "", ["/srv/ann"]),
        (("--root=data/{{user.id}}",), "/opt/app", ["/opt/app/data/42"]),
        (("data/{{user.id}}.db", "{{user.id}}", "--user", "{{user.username}}"), "", []),
        (("https://x.example/{{user.id}}",), "", []),
        ((), "/run/app/{{user.id}}", ["/run/app/42"]),
        (("w/{{user.id}}",), "/run/app/{{user.id}}", ["/run/app/42", "/run/app/42/w/42"]),
    ],
)
def test_the_directories_made_for_a_user(args, cwd, wanted):
    spec = _spec(args=args, cwd=cwd).for_user(UserContext(id=42, username="ann"))

    assert list(spec.make_dirs) == [path.format(base=Path.cwd()) for path in wanted]


@pytest.mark.parametrize("username", ["..", ".", "-rf", "a/b", "a\\b", ".hidden"])
def test_a_username_unsafe_for_a_path_is_refused(username):
    spec = _spec(args=("workspace/{{user.username}}",))

    with pytest.raises(ConfigError, match="cannot be used"):
        spec.for_user(UserContext(id=1, username=username))
    # a server that only uses the id does not care about the username
    assert _spec(args=("workspace/{{user.id}}",)).for_user(UserContext(id=1, username=username)).args == (
        "workspace/1",
    )


# --- connections ---------------------------------------------------------------------------------


def test_each_user_gets_their_own_process_with_their_values(per_user_server, user, other_user):
    host = get_host()

    mine = host.call_tool("test__env", {"name": "WHO"}, user=user)
    theirs = host.call_tool("test__env", {"name": "WHO"}, user=other_user)

    assert (mine.is_error, mine.text) == (False, "alice")
    assert (theirs.is_error, theirs.text) == (False, "bob")
    assert _pid(host, user) != _pid(host, other_user)
    assert sorted(host.user_connections) == [("test", user.pk), ("test", other_user.pk)]


def test_a_per_user_server_is_not_connected_at_boot_and_not_offered_without_a_user(per_user_server, user):
    host = get_host()
    host.ready(15)

    statuses = {status.name: status.status for status in host.statuses()}
    offered_without_user = host.tools()
    offered_to_user = [tool.namespaced_name for tool in host.tools(user=user)]
    unknown = host.call_tool("test__echo", {"text": "x"})

    assert statuses == {"test": "per-user"}
    assert offered_without_user == []
    assert "test__echo" in offered_to_user
    assert unknown.is_error is True
    assert unknown.text == "Unknown tool 'test__echo'"


def test_the_least_recently_used_connection_is_closed_over_the_cap(per_user_server, user, other_user, settings):
    settings.MCP_USER_CONNECTIONS_MAX = 1
    host = get_host()
    first = _pid(host, user)

    second = _pid(host, other_user)

    wait_until(lambda: not _alive(first))
    assert _alive(second)
    assert list(host.user_connections) == [("test", other_user.pk)]
    # the first user's next call starts a new process, which in turn closes the second user's
    again = _pid(host, user)
    assert again != first
    wait_until(lambda: not _alive(second))
    assert list(host.user_connections) == [("test", user.pk)]


def test_an_idle_connection_is_closed_and_starts_again_on_next_use(per_user_server, user, settings):
    settings.MCP_USER_CONNECTION_IDLE_SECONDS = 0.5
    host = get_host()
    first = _pid(host, user)

    wait_until(lambda: not _alive(first))

    assert host.user_connections == {}
    again = _pid(host, user)
    assert again != first


def test_a_busy_connection_is_not_closed_while_its_call_runs(per_user_server, user, settings):
    settings.MCP_USER_CONNECTION_IDLE_SECONDS = 0.3
    host = get_host()
    _pid(host, user)

    slow = host.call_tool("test__slow", {"seconds": 1.5}, user=user)  # five idle timeouts long

    assert (slow.is_error, slow.text) == (False, "slept 1.5")


def test_a_config_change_closes_the_per_user_connections_of_that_server_only(per_user_server, user):
    other = stdio_test_server("other", timeout_seconds=10, env={"WHO": "{{user.id}}"})
    other.save()
    host = get_host()
    before = _pid(host, user)
    other_before = int(host.call_tool("other__pid", {}, user=user).text)

    McpServer.objects.filter(name="test").update(env={"WHO": "changed {{user.username}}"})
    changed = host.reload()

    assert changed == ["test"]
    wait_until(lambda: not _alive(before))
    assert _alive(other_before)
    assert host.call_tool("test__env", {"name": "WHO"}, user=user).text == "changed alice"
    assert int(host.call_tool("other__pid", {}, user=user).text) == other_before


def test_a_user_whose_name_cannot_be_used_gets_no_connection(per_user_server):
    odd = UserFactory(username="..")
    host = get_host()

    offered = host.tools(user=odd)
    called = host.call_tool("test__echo", {"text": "x"}, user=odd)

    assert offered == []
    assert called.is_error is True
    assert called.text == "MCP server 'test' cannot run for this user"
    assert host.user_connections == {}


# --- API and health -------------------------------------------------------------------------------


def test_the_api_shows_a_per_user_server_and_the_callers_own_tools(api, per_user_server, user):
    servers = api.get("/api/mcp/servers").json()
    tools = api.get("/api/mcp/servers/test/tools")
    summary = api.get("/api/mcp/status").json()

    assert [(s["name"], s["live"]["status"]) for s in servers] == [("test", "per-user")]
    assert tools.status_code == 200, tools.content
    assert "test__env" in [tool["name"] for tool in tools.json()]
    assert list(get_host().user_connections) == [("test", user.pk)]
    assert summary["servers"]["per-user"] == 1


def test_a_health_snapshot_records_a_per_user_server_as_such(per_user_server):
    mcp_health_snapshot()

    assert list(McpServerHealthSnapshot.objects.values_list("server", "status", "tool_count")) == [
        ("test", "per-user", 0)
    ]


# --- sandboxes in turns -----------------------------------------------------------------------------


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
def test_each_users_turns_have_their_own_filesystem_sandbox(
    api, other_api, user, other_user, providers, tmp_path, settings
):
    settings.MCP_READY_WAIT = 120  # npx may take a while to start the first time
    McpServer.objects.create(
        name="files",
        transport="stdio",
        command=NPX,
        timeout_seconds=60,
        cwd=str(tmp_path),
        args=["-y", f"@modelcontextprotocol/server-filesystem@{NODE_SERVERS_VERSION}", "workspace/{{user.id}}"],
        tool_policies={"write_file": "allow"},  # the server marks it destructive, which would ask
    )
    mine, theirs = tmp_path / "workspace" / str(user.pk), tmp_path / "workspace" / str(other_user.pk)
    secret = str(mine / "secret.txt")
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("files__write_file", {"path": secret, "content": "alice's secret"})]),
        Turn(text="Written."),
        Turn(
            tool_calls=[
                ToolCallSpec("files__read_text_file", {"path": secret}),
                ToolCallSpec("files__list_allowed_directories", {}),
            ]
        ),
        Turn(text="I cannot read it."),
    )

    def turn(client, message):
        chat = ChatFactory(owner=user if client is api else other_user)
        response = client.post(
            f"/api/chats/{chat.pk}/messages",
            {"message": message, "provider": "openai", "model": MODELS["openai"]},
            format="json",
        )
        assert response.status_code == 200, response.content
        return response.json()["tool_executions"]

    written = turn(api, "Write my secret")
    read, allowed = turn(other_api, "Read alice's secret")

    assert written[0]["is_error"] is False, written[0]["content"]
    assert (mine / "secret.txt").read_text() == "alice's secret"
    assert theirs.is_dir()  # made by the host before the server started
    assert read["is_error"] is True
    assert "denied" in read["content"].lower() or "outside" in read["content"].lower()
    assert str(theirs) in allowed["content"]
    assert str(mine) not in allowed["content"]
