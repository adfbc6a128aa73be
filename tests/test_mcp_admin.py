"""The McpServer admin against real MCP server processes: live status columns, the test-connection
and reconnect actions, the tool table, and edits reaching this process's running host."""

import json
import re
import sys
from html import unescape
from pathlib import Path

import pytest
from django.contrib import messages
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils.html import escape

from mcp_servers.host import get_host
from mcp_servers.models import McpServer

from .conftest import mcp_admin_form, stdio_test_server, wait_until
from .factories import UserFactory

# The host reads McpServer rows from its own thread: rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:mcp_servers_mcpserver_changelist")
MISSING_COMMAND = "/nonexistent/mcp-server"
MISSING_COMMAND_ERROR = f"FileNotFoundError: [Errno 2] No such file or directory: '{MISSING_COMMAND}'"
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
TEST_TOOLS = "echo, wipe, peek, add, slow, rendezvous, fail, pid, env, a_tool_with_a_deliberately_long_name"


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def slow_retries(settings):
    # A failed server retries after a minute instead of half a second, so it stays "error"
    # rather than passing through "connecting" while a test looks at it.
    settings.MCP_RESTART_BACKOFF_INITIAL = 60
    settings.MCP_RESTART_BACKOFF_MAX = 60


@pytest.fixture
def connected():
    """The test server, saved and connected."""
    server = stdio_test_server(env={"GREETING": "before"})
    server.save()
    get_host().ready(10)
    return server


@pytest.fixture
def broken(slow_retries):
    """A server whose command does not exist, already failed."""
    server = McpServer.objects.create(name="broken", transport="stdio", command=MISSING_COMMAND)
    wait_until(lambda: any(s.name == "broken" and s.status == "error" for s in get_host().statuses()), 10)
    return server


def _row(page: str, name: str) -> str:
    """The changelist row of server ``name``."""
    match = re.search(rf'<tr>(?:(?!</tr>).)*aria-label="Select this object for an action - {name}".*?</tr>', page)
    assert match is not None, f"no row for {name}"
    return match.group(0)


def _cell(row: str, field: str) -> str:
    match = re.search(rf'<td class="field-{field}">(.*?)</td>', row)
    assert match is not None, f"no {field} cell"
    return match.group(1)


def _messages(response) -> list[tuple[int, str]]:
    return [(message.level, str(message)) for message in response.context["messages"]]


def _action(admin_client, action: str, *servers: McpServer):
    return admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [server.pk for server in servers]}, follow=True
    )


def _env(name: str) -> str:
    return get_host().call_tool("test__env", {"name": name}).text


def _pid() -> str:
    return get_host().call_tool("test__pid", {}).text


# --- the list ------------------------------------------------------------------------------------


def test_list_shows_a_connected_server_with_its_tool_count(admin_client, connected):
    page = admin_client.get(CHANGELIST).content.decode()

    row = _row(page, "test")
    assert _cell(row, "live") == '<b class="status-connected">connected</b>'
    assert _cell(row, "tool_count") == "11"


def test_list_shows_a_failing_server_as_error_with_its_reason(admin_client, broken):
    page = admin_client.get(CHANGELIST).content.decode()

    row = _row(page, "broken")
    assert _cell(row, "live") == '<b class="status-error">error</b>'
    assert _cell(row, "tool_count") == "—"
    assert _cell(row, "last_error") == escape(MISSING_COMMAND_ERROR)


def test_list_shows_a_disabled_server_as_disabled(admin_client):
    stdio_test_server(enabled=False).save()

    page = admin_client.get(CHANGELIST).content.decode()

    assert _cell(_row(page, "test"), "live") == '<b class="status-disabled">disabled</b>'


def test_list_colours_statuses_with_a_stylesheet_the_csp_allows(admin_client):
    stdio_test_server(enabled=False).save()

    page = admin_client.get(CHANGELIST).content.decode()

    # Inline style attributes would be refused by the Content-Security-Policy (style-src 'self').
    assert 'href="/static/platform_site/admin-status.css"' in page
    assert "style=" not in _row(page, "test")


def test_list_masks_env_and_header_values_of_a_live_server(admin_client):
    stdio_test_server(env={"API_TOKEN": "s3cret-value", "HOME_DIR": "${HOME}"}, headers={"X-Key": "h3ader"}).save()
    get_host().ready(10)

    page = admin_client.get(CHANGELIST).content.decode()

    assert "s3cret-value" not in page
    assert "h3ader" not in page
    row = _row(page, "test")
    assert _cell(row, "masked_env") == "API_TOKEN=••••, HOME_DIR=${HOME}"
    assert _cell(row, "masked_headers") == "X-Key=••••"


def test_list_masks_a_secret_between_two_references(admin_client):
    stdio_test_server(env={"DATABASE_URL": "${SCHEME}://app:p4ssw0rd@db/${DB_NAME}"}, enabled=False).save()

    page = admin_client.get(CHANGELIST).content.decode()

    assert "p4ssw0rd" not in page


# --- actions ---------------------------------------------------------------------------------------


def test_test_connection_on_a_working_server_reports_its_tools(admin_client, connected):
    response = _action(admin_client, "test_connection", connected)

    assert response.status_code == 200
    [(level, text)] = _messages(response)
    assert level == messages.SUCCESS
    # the list of names is cut short, at a word
    assert re.fullmatch(rf"test: connected in \d+ ms, 11 tools \({TEST_TOOLS}[a-z_]*…\)", text)


def test_test_connection_on_a_broken_server_reports_the_error(admin_client, broken):
    response = _action(admin_client, "test_connection", broken)

    assert response.status_code == 200
    [(level, text)] = _messages(response)
    assert level == messages.ERROR
    assert re.fullmatch(rf"broken: failed after \d+ ms: {re.escape(MISSING_COMMAND_ERROR)}", text)


def test_test_connection_leaves_the_running_connection_alone(admin_client, connected):
    before = _pid()

    _action(admin_client, "test_connection", connected)

    assert _pid() == before
    assert [status.calls for status in get_host().statuses()] == [2]  # only our two pid calls


def test_reconnect_action_starts_a_new_server_process(admin_client, connected):
    before = _pid()

    response = _action(admin_client, "reconnect", connected)

    assert _messages(response) == [(messages.INFO, "Reconnecting: test.")]
    wait_until(lambda: (pid := _pid()).isdigit() and pid != before)


def test_reconnect_action_skips_disabled_servers(admin_client):
    server = stdio_test_server(enabled=False)
    server.save()

    response = _action(admin_client, "reconnect", server)

    assert _messages(response) == [(messages.INFO, "Reconnecting: nothing (no enabled server selected).")]


# --- the change page -------------------------------------------------------------------------------


def test_change_page_shows_the_live_status_and_tool_table(admin_client, connected):
    page = admin_client.get(reverse("admin:mcp_servers_mcpserver_change", args=[connected.pk])).content.decode()

    assert re.search(r'<div class="readonly">connected · platform-test-server · protocol [\d-]+</div>', page)
    assert (
        "<tr><td><code>echo</code></td><td><code>test__echo</code></td><td>Echo the text back.</td><td>—</td></tr>"
        in page
    )
    assert page.count("<tr><td><code>") == 11


def test_change_page_shows_tool_annotations(admin_client):
    server = McpServer.objects.create(name="time", transport="stdio", command=TIME_SERVER)
    get_host().ready(10)

    page = admin_client.get(reverse("admin:mcp_servers_mcpserver_change", args=[server.pk])).content.decode()

    assert (
        "<td><code>time__get_current_time</code></td><td>Get current time in a specific timezone</td>"
        "<td>destructiveHint=False, idempotentHint=True, openWorldHint=False, readOnlyHint=True</td>"
    ) in page


def test_change_page_of_a_failing_server_shows_the_error_and_no_tools(admin_client, broken):
    page = admin_client.get(reverse("admin:mcp_servers_mcpserver_change", args=[broken.pk])).content.decode()

    assert f'<div class="readonly">error · error: {escape(MISSING_COMMAND_ERROR)}</div>' in page
    assert '<div class="readonly">no tools (not connected, or the server offers none)</div>' in page


# --- saving reaches the running host -----------------------------------------------------------------


def _form(**overrides) -> dict:
    return mcp_admin_form(**{"env": json.dumps({"GREETING": "before"}), **overrides})


def test_saving_the_change_form_updates_the_running_connection(admin_client, connected):
    assert _env("GREETING") == "before"

    response = admin_client.post(
        reverse("admin:mcp_servers_mcpserver_change", args=[connected.pk]),
        _form(env=json.dumps({"GREETING": "after"})),
    )

    assert response.status_code == 302
    assert McpServer.objects.get(pk=connected.pk).env == {"GREETING": "after"}
    wait_until(lambda: _env("GREETING") == "after")


def test_disabling_a_server_in_the_change_form_disconnects_it(admin_client, connected):
    form = _form()
    del form["enabled"]  # an unchecked checkbox is not sent

    response = admin_client.post(reverse("admin:mcp_servers_mcpserver_change", args=[connected.pk]), form)

    assert response.status_code == 302
    wait_until(lambda: [(s.name, s.status) for s in get_host().statuses()] == [("test", "disabled")])
    assert get_host().tools() == []


def test_adding_a_server_in_the_admin_connects_it(admin_client):
    get_host().ready(10)  # a running host with no servers yet

    response = admin_client.post(reverse("admin:mcp_servers_mcpserver_add"), _form(name="added"))

    assert response.status_code == 302
    wait_until(lambda: [(s.name, s.status) for s in get_host().statuses()] == [("added", "connected")])
    assert "added__echo" in [tool.namespaced_name for tool in get_host().tools()]


def test_deleting_a_server_in_the_admin_disconnects_it(admin_client, connected):
    response = admin_client.post(reverse("admin:mcp_servers_mcpserver_delete", args=[connected.pk]), {"post": "yes"})

    assert response.status_code == 302
    wait_until(lambda: get_host().statuses() == [])
    assert get_host().tools() == []


# --- env and header values are write-only ------------------------------------------------------------

SECRET = "s3cret-value"


def _change_url(server: McpServer) -> str:
    return reverse("admin:mcp_servers_mcpserver_change", args=[server.pk])


def _textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea name="{name}"[^>]*>\n?(.*?)</textarea>', page, re.S)
    assert match is not None, f"no {name} textarea"
    return unescape(match.group(1))


@pytest.fixture
def secret_server():
    server = stdio_test_server(env={"API_TOKEN": SECRET, "HOME_DIR": "${HOME}"}, headers={"X-Key": "h3ader-value"})
    server.save()
    get_host().ready(10)
    return server


def test_a_view_only_user_sees_the_server_with_its_secrets_masked(client, secret_server):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_mcpserver"))
    client.force_login(viewer)

    response = client.get(_change_url(secret_server))

    page = response.content.decode()
    assert response.status_code == 200
    assert SECRET not in page
    assert "h3ader-value" not in page
    assert "API_TOKEN=••••" in page


def test_change_form_shows_env_and_header_values_masked(admin_client, secret_server):
    page = admin_client.get(_change_url(secret_server)).content.decode()

    assert SECRET not in page
    assert "h3ader-value" not in page
    assert json.loads(_textarea(page, "env")) == {"API_TOKEN": "********", "HOME_DIR": "${HOME}"}
    assert json.loads(_textarea(page, "headers")) == {"X-Key": "********"}


def test_saving_the_change_form_unchanged_keeps_the_secrets(admin_client, secret_server):
    # given the form as the admin renders it
    page = admin_client.get(_change_url(secret_server)).content.decode()
    form = _form(env=_textarea(page, "env"), headers=_textarea(page, "headers"), description="edited")

    # when it is saved with only the description changed
    response = admin_client.post(_change_url(secret_server), form)

    # then the stored values are kept, and the running server still has its token
    assert response.status_code == 302
    row = McpServer.objects.get(pk=secret_server.pk)
    assert (row.description, row.env, row.headers) == (
        "edited",
        {"API_TOKEN": SECRET, "HOME_DIR": "${HOME}"},
        {"X-Key": "h3ader-value"},
    )
    assert _env("API_TOKEN") == SECRET


def test_typing_over_a_mask_replaces_the_value_and_new_keys_are_taken(admin_client, secret_server):
    env = {"API_TOKEN": "n3w-value", "HOME_DIR": "${HOME}", "EXTRA": "added"}

    response = admin_client.post(_change_url(secret_server), _form(env=json.dumps(env), headers="{}"))

    assert response.status_code == 302
    row = McpServer.objects.get(pk=secret_server.pk)
    assert (row.env, row.headers) == (env, {})
    wait_until(lambda: _env("API_TOKEN") == "n3w-value")


def test_a_mask_with_no_stored_value_is_refused(admin_client, secret_server):
    env = {"API_TOKEN": "********", "NEW_KEY": "********"}

    response = admin_client.post(_change_url(secret_server), _form(env=json.dumps(env)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "env": ["No stored value to keep for NEW_KEY: enter the value."]
    }
    assert McpServer.objects.get(pk=secret_server.pk).env == {"API_TOKEN": SECRET, "HOME_DIR": "${HOME}"}
