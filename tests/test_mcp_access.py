"""Who may use which MCP server: access by user and group, denied tools, and where each rule shows.

Real MCP server processes (the stdio test server) called by scripted models through the real provider
SDKs. The host reads rows from its own thread, so these tests commit (transaction=True).
"""

import io
import json

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chats.models import Chat, ToolExecution
from mcp_servers import broadcast
from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from mcp_servers.selectors import mcp_servers_usable_by
from mcp_servers.services import mcp_server_save

from .conftest import client_for, mcp_admin_form, stdio_test_server, wait_until
from .factories import ChatFactory, UserFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

NOT_AVAILABLE = "Tool 'test__echo' is not available. Use one of the tools offered."


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True)


@pytest.fixture
def staff_api(staff):
    return client_for(staff)


def _servers() -> None:
    """Beside the servers saved so far, "open": another test server, which everyone may use; all connected."""
    stdio_test_server(name="open").save()
    get_host().ready(20)


def _restricted(*, users=(), groups=(), **fields) -> McpServer:
    server = stdio_test_server(access_restricted=True, **fields)
    server.save()
    server.allowed_users.set(users)
    server.allowed_groups.set(groups)
    return server


def _turn(client, chat, **body):
    return client.post(
        f"/api/chats/{chat.pk}/messages",
        {"message": "Go", "provider": "openai", "model": MODELS["openai"], **body},
        format="json",
    )


def _offered(providers, index: int = 0) -> list[str]:
    request = providers["openai"].requests_to("/chat/completions")[index].json
    return sorted(tool["function"]["name"] for tool in request.get("tools", []))


def _calls(server: str) -> int:
    return next(status.calls for status in get_host().statuses() if status.name == server)


# --- turns -----------------------------------------------------------------------------------------


def test_a_user_without_access_is_offered_no_tools_of_the_server(api, user, other_user, providers):
    _restricted(users=[other_user])
    _servers()
    providers["openai"].push(Turn(text="ok"))

    response = _turn(api, ChatFactory(owner=user))

    assert response.status_code == 200, response.content
    offered = _offered(providers)
    assert {name.split("__")[0] for name in offered} == {"open"}


def test_a_forced_call_to_a_server_without_access_is_refused_and_never_reaches_it(api, user, other_user, providers):
    _restricted(users=[other_user])
    _servers()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "hi"})]), Turn(text="Could not."))
    chat = ChatFactory(owner=user)

    body = _turn(api, chat).json()

    assert [(e["name"], e["is_error"], e["content"]) for e in body["tool_executions"]] == [
        ("test__echo", True, NOT_AVAILABLE)
    ]
    assert body["response"] == "Could not."
    assert _calls("test") == 0
    assert list(ToolExecution.objects.values_list("server", "tool", "is_error")) == [("", "test__echo", True)]


def test_a_listed_user_gets_the_servers_tools_and_can_call_them(user, providers):
    _restricted(users=[user])
    _servers()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "hi"})]), Turn(text="Done."))

    body = _turn(client_for(user), ChatFactory(owner=user)).json()

    assert "test__echo" in _offered(providers)
    assert [(e["name"], e["is_error"], e["content"]) for e in body["tool_executions"]] == [("test__echo", False, "hi")]
    assert _calls("test") == 1


def test_access_through_a_group(user, other_user, providers):
    research = Group.objects.create(name="research")
    user.groups.add(research)
    _restricted(groups=[research])
    _servers()
    providers["openai"].push(Turn(text="a"), Turn(text="b"))

    _turn(client_for(user), ChatFactory(owner=user))
    _turn(client_for(other_user), ChatFactory(owner=other_user))

    assert "test__echo" in _offered(providers, 0)
    assert "test__echo" not in _offered(providers, 1)
    assert mcp_servers_usable_by(user=user) == {"open", "test"}
    assert mcp_servers_usable_by(user=other_user) == {"open"}


def test_staff_turns_follow_the_access_rules(staff, staff_api, other_user, providers):
    _restricted(users=[other_user])
    _servers()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "hi"})]), Turn(text="No."))

    body = _turn(staff_api, ChatFactory(owner=staff)).json()

    assert "test__echo" not in _offered(providers)
    assert body["tool_executions"][0]["content"] == NOT_AVAILABLE
    assert _calls("test") == 0


def test_naming_a_server_without_access_in_a_turn_is_400_like_an_unknown_one(api, user, other_user, providers):
    _restricted(users=[other_user])
    chat = ChatFactory(owner=user)

    response = _turn(api, chat, mcp_servers=["test"])

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "unknown_mcp_server",
        "message": "Unknown MCP server(s): test.",
        "details": {"mcp_servers": ["test"]},
    }
    assert providers["openai"].requests_to("/chat/completions") == []


def test_a_chat_cannot_be_set_up_with_a_server_without_access(api, other_user):
    _restricted(users=[other_user])

    created = api.post("/api/chats", {"mcp_servers": ["test"]}, format="json")

    assert created.status_code == 400
    assert created.json()["error"]["code"] == "unknown_mcp_server"
    assert Chat.objects.count() == 0


def test_a_chats_server_closed_to_its_owner_since_is_left_out(api, user, other_user, providers):
    restricted = _restricted(users=[user])
    _servers()
    chat = ChatFactory(owner=user)
    chat.mcp_servers.set([restricted, McpServer.objects.get(name="open")])
    restricted.allowed_users.set([other_user])
    mcp_server_save(server=restricted)  # as admin does: announced after commit
    providers["openai"].push(Turn(text="ok"))

    response = _turn(api, chat)

    assert response.status_code == 200
    offered = _offered(providers)
    assert {name.split("__")[0] for name in offered} == {"open"}


# --- denied tools --------------------------------------------------------------------------------


def test_a_denied_tool_is_hidden_from_and_refused_to_staff_too(staff, staff_api, providers):
    stdio_test_server(denied_tools=["echo"]).save()
    get_host().ready(20)
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("test__echo", {"text": "hi"})]), Turn(text="No."))

    body = _turn(staff_api, ChatFactory(owner=staff)).json()
    direct = staff_api.post("/api/mcp/servers/test/tools/echo/call", {"arguments": {"text": "hi"}}, format="json")
    listed = [tool["name"] for tool in staff_api.get("/api/mcp/tools").json()]

    offered = _offered(providers)
    assert "test__echo" not in offered
    assert "test__add" in offered
    assert body["tool_executions"][0]["content"] == NOT_AVAILABLE
    assert direct.status_code == 403
    assert direct.json()["error"] == {
        "code": "tool_denied",
        "message": "Tool 'echo' of MCP server 'test' is denied by its configuration.",
        "details": None,
    }
    assert "test__echo" not in listed
    assert "test__add" in listed
    assert _calls("test") == 0
    assert get_host().call_tool("test__echo", {"text": "hi"}).text == "Unknown tool 'test__echo'"


# --- the API -------------------------------------------------------------------------------------


def test_api_listings_leave_out_servers_a_user_may_not_use(api, other_user):
    _restricted(users=[other_user])
    _servers()

    servers = api.get("/api/mcp/servers").json()
    tools = api.get("/api/mcp/tools").json()

    assert [(s["name"], s["usable"]) for s in servers] == [("open", True)]
    assert {tool["server"] for tool in tools} == {"open"}
    assert api.get("/api/mcp/status").json()["total_servers"] == 1  # not even the restricted one's existence
    for path in ("", "/tools", "/resources", "/prompts"):
        response = api.get(f"/api/mcp/servers/test{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "unknown_mcp_server"


def test_staff_see_every_server_marked_whether_they_may_use_it(staff_api, other_user):
    _restricted(users=[other_user], denied_tools=["fail"])
    _servers()

    servers = staff_api.get("/api/mcp/servers").json()
    detail = staff_api.get("/api/mcp/servers/test").json()
    tools = {tool["server"] for tool in staff_api.get("/api/mcp/tools").json()}

    assert [(s["name"], s["usable"], s["denied_tools"]) for s in servers] == [
        ("open", True, []),
        ("test", False, ["fail"]),
    ]
    assert (detail["usable"], detail["live"]["tool_count"]) == (False, 10)
    assert tools == {"open", "test"}


# --- the cache of access rules -------------------------------------------------------------------


def test_access_rules_cost_no_query_once_read(user, other_user):
    research = Group.objects.create(name="research")
    _restricted(users=[other_user], groups=[research])
    first = mcp_servers_usable_by(user=user)

    with CaptureQueriesContext(connection) as queries:
        again = mcp_servers_usable_by(user=user)

    assert first == again == frozenset()
    assert queries.captured_queries == []


def test_a_save_through_the_service_applies_at_once(user):
    server = _restricted()
    assert mcp_servers_usable_by(user=user) == frozenset()

    server.allowed_users.set([user])
    mcp_server_save(server=server)

    assert mcp_servers_usable_by(user=user) == {"test"}


def test_a_change_announced_by_another_worker_reaches_this_process(user, settings):
    settings.CONFIG_CACHE_SECONDS = 60  # only the announcement can make this process read the rules again
    server = _restricted()
    get_host().ready(20)
    wait_until(get_host().listening.is_set)
    assert mcp_servers_usable_by(user=user) == frozenset()

    # another worker saves and announces; this process reads nothing until the message arrives
    server.allowed_users.set([user])
    async_to_sync(get_channel_layer().group_send)(broadcast.GROUP, broadcast.MESSAGE)

    wait_until(lambda: mcp_servers_usable_by(user=user) == {"test"}, seconds=10)


# --- admin -----------------------------------------------------------------------------------------


def test_the_admin_form_saves_access_and_denied_tools(client, user):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    research = Group.objects.create(name="research")
    form = mcp_admin_form(
        access_restricted="on",
        allowed_users=[str(user.pk)],
        allowed_groups=[str(research.pk)],
        denied_tools=json.dumps(["fail"]),
    )
    assert mcp_servers_usable_by(user=user) == frozenset()

    response = client.post(reverse("admin:mcp_servers_mcpserver_add"), form)

    assert response.status_code == 302, response.content
    server = McpServer.objects.get(name="test")
    assert (server.access_restricted, server.denied_tools) == (True, ["fail"])
    assert list(server.allowed_users.all()) == [user]
    assert list(server.allowed_groups.all()) == [research]
    assert mcp_servers_usable_by(user=user) == {"test"}  # the save cleared this process's copy


def test_the_admin_change_form_has_an_access_fieldset(client):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:mcp_servers_mcpserver_add")).content.decode()

    assert ">Access</h2>" in page
    for field in ("access_restricted", "allowed_users", "allowed_groups", "denied_tools"):
        assert f'name="{field}"' in page
    assert "selectfilter" in page  # filter_horizontal for users and groups


# --- import and export ------------------------------------------------------------------------------


def _import(tmp_path, data: object, *args: str) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = io.StringIO()
    call_command("import_mcp_config", str(path), *args, stdout=out)
    return out.getvalue()


def _access_of(name: str) -> tuple:
    server = McpServer.objects.get(name=name)
    return (
        server.access_restricted,
        sorted(u.username for u in server.allowed_users.all()),
        sorted(g.name for g in server.allowed_groups.all()),
        server.denied_tools,
    )


def test_import_sets_access_and_denied_tools(tmp_path, user):
    Group.objects.create(name="research")
    config = {
        "mcpServers": {
            "files": {
                "command": "srv",
                "access": {"users": ["alice"], "groups": ["research"]},
                "denied_tools": ["move_file"],
            },
            "time": {"command": "srv"},
        }
    }

    out = _import(tmp_path, config)

    assert out.endswith("2 created, 0 updated, 0 unchanged.\n")
    assert _access_of("files") == (True, ["alice"], ["research"], ["move_file"])
    assert _access_of("time") == (False, [], [], [])


def test_an_import_changing_access_reports_it(tmp_path, user, other_user):
    _import(tmp_path, {"mcpServers": {"files": {"command": "srv", "access": {"users": ["alice"]}}}})

    out = _import(tmp_path, {"mcpServers": {"files": {"command": "srv", "access": {"users": ["bob"]}}}})
    opened = _import(tmp_path, {"mcpServers": {"files": {"command": "srv"}}})

    assert out.startswith("updated files: allowed_users\n")
    assert opened.startswith("updated files: access_restricted\n")
    assert _access_of("files") == (False, ["bob"], [], [])


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"access": {"users": ["alice", "nobody"]}}, "Server 'files': access: unknown user(s): nobody."),
        ({"access": {"groups": ["ghosts"]}}, "Server 'files': access: unknown group(s): ghosts."),
        ({"access": {"roles": ["x"]}}, "Server 'files': unknown key(s) in 'access': roles (use 'users', 'groups')."),
        ({"access": ["alice"]}, "Server 'files': 'access' must be an object with 'users' and 'groups' lists."),
        ({"access": {"users": "alice"}}, "Server 'files' access: 'users' must be a list of strings."),
        ({"denied_tools": "echo"}, "Server 'files': 'denied_tools' must be a list of strings."),
    ],
)
def test_bad_access_fails_the_whole_file(tmp_path, user, entry, message, dry_run):
    config = {"mcpServers": {"time": {"command": "srv"}, "files": {"command": "srv", **entry}}}

    with pytest.raises(CommandError) as error:
        _import(tmp_path, config, *(["--dry-run"] if dry_run else []))

    assert message in str(error.value)
    assert "nothing was imported" in str(error.value)
    assert McpServer.objects.count() == 0


def test_export_then_import_gives_back_the_same_access(tmp_path, user, other_user):
    research = Group.objects.create(name="research")
    Group.objects.create(name="unused")
    _restricted(users=[user, other_user], groups=[research], denied_tools=["fail", "env"])
    nobody = stdio_test_server(name="nobody", access_restricted=True)
    nobody.save()
    stdio_test_server(name="open", denied_tools=["slow"]).save()
    before = {name: _access_of(name) for name in ("test", "nobody", "open")}
    out = io.StringIO()
    call_command("export_mcp_config", stdout=out)
    exported = json.loads(out.getvalue())["mcpServers"]

    McpServer.objects.all().delete()
    created = _import(tmp_path, {"mcpServers": exported})
    again = _import(tmp_path, {"mcpServers": exported})

    assert exported["test"]["access"] == {"users": ["alice", "bob"], "groups": ["research"]}
    assert exported["test"]["denied_tools"] == ["fail", "env"]
    assert exported["nobody"]["access"] == {"users": [], "groups": []}
    assert "access" not in exported["open"]
    assert created.endswith("3 created, 0 updated, 0 unchanged.\n")
    assert again.endswith("0 created, 0 updated, 3 unchanged.\n")
    assert {name: _access_of(name) for name in ("test", "nobody", "open")} == before
