"""Approval policies and user variables in the McpServer admin, and the effective-policy rule it shows.

The change page lists the tools of a real MCP server process (the stdio test server) with the policy each
would get and why. The host reads rows from its own thread, so the admin tests commit (transactional_db).
"""

import json
import re
from html import unescape

import pytest
from django.urls import reverse

from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from mcp_servers.policies import effective_policy

from .conftest import mcp_admin_form, stdio_test_server
from .factories import UserFactory

READ_ONLY = {"readOnlyHint": True}
DESTRUCTIVE = {"destructiveHint": True}


# --- the rule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "default", "tools", "expected"),
    [
        # The admin's choice for the tool wins over every hint and the default.
        (DESTRUCTIVE, "", {"t": "allow"}, ("allow", "tool")),
        (READ_ONLY, "allow", {"t": "deny"}, ("deny", "tool")),
        ({}, "deny", {"t": "ask"}, ("ask", "tool")),
        # Without one, the server's hints decide.
        (READ_ONLY, "deny", {}, ("allow", "readOnlyHint")),
        (DESTRUCTIVE, "allow", {}, ("ask", "destructiveHint")),
        (DESTRUCTIVE, "deny", {"other": "allow"}, ("ask", "destructiveHint")),
        ({"readOnlyHint": True, "destructiveHint": True}, "", {}, ("allow", "readOnlyHint")),
        # A hint that is not plainly true is no hint.
        ({"readOnlyHint": False, "destructiveHint": False}, "ask", {}, ("ask", "default")),
        ({"readOnlyHint": "true"}, "deny", {}, ("deny", "default")),
        # Everything else follows the server's default, itself allow when blank.
        ({}, "ask", {}, ("ask", "default")),
        ({}, "deny", {}, ("deny", "default")),
        ({"idempotentHint": True}, "", {}, ("allow", "default")),
    ],
)
def test_effective_policy(annotations, default, tools, expected):
    assert effective_policy(tool="t", annotations=annotations, default=default, tools=tools) == expected


# --- the admin ------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, transactional_db):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _change_url(server: McpServer) -> str:
    return reverse("admin:mcp_servers_mcpserver_change", args=[server.pk])


def _policy_table(page: str) -> dict[str, tuple[str, str]]:
    """The effective-policies table: tool -> (policy, why)."""
    match = re.search(r'<div class="readonly"><table><thead><tr><th>tool</th><th>policy</th>.*?</table>', page, re.S)
    assert match is not None, "no effective policies table"
    rows = re.findall(r'<tr><th scope="row"><code>(.*?)</code></th><td>(.*?)</td><td>(.*?)</td></tr>', match.group(0))
    return {unescape(tool): (policy, unescape(why)) for tool, policy, why in rows}


def test_change_page_shows_each_tools_effective_policy_and_why(admin_client):
    # given a server with a default, a policy of its own for one tool, a denied tool and a policy for a
    # tool it does not offer
    server = stdio_test_server(
        approval_default="ask",
        tool_policies={"echo": "deny", "wipe": "allow", "ghost": "ask"},
        denied_tools=["fail"],
    )
    server.save()
    get_host().ready(10)

    page = admin_client.get(_change_url(server)).content.decode()

    table = _policy_table(page)
    assert table["echo"] == ("deny", "set for this tool")
    assert table["wipe"] == ("allow", "set for this tool")  # the admin's choice beats destructiveHint
    assert table["peek"] == ("allow", "the server marks it read-only (readOnlyHint)")
    assert table["add"] == ("ask", "server default (ask)")
    assert table["fail"] == ("deny", "denied tools (Access): never offered nor callable")
    assert table["ghost"] == ("ask", "set for this tool, which the server does not offer now")
    offered = {tool.name for tool in get_host().tools(["test"])}
    assert set(table) == offered | {"fail", "ghost"}


def test_change_page_shows_destructive_tools_asking_and_the_rest_allowed_without_a_default(admin_client):
    server = stdio_test_server()
    server.save()
    get_host().ready(10)

    table = _policy_table(admin_client.get(_change_url(server)).content.decode())

    assert table["wipe"] == ("ask", "the server marks it destructive (destructiveHint)")
    assert table["echo"] == ("allow", "no server default: allow")


def test_a_disabled_server_shows_its_own_policies_and_says_its_tools_are_unknown(admin_client):
    server = stdio_test_server(enabled=False, tool_policies={"echo": "deny"})
    server.save()

    page = admin_client.get(_change_url(server)).content.decode()

    assert _policy_table(page) == {"echo": ("deny", "set for this tool, which the server does not offer now")}
    assert "<p>The server is disabled: its tools are not known.</p>" in page


def test_change_page_has_the_tool_approval_and_user_variables_fieldsets(admin_client):
    page = admin_client.get(reverse("admin:mcp_servers_mcpserver_add")).content.decode()

    assert ">Tool approval</h2>" in page
    assert ">User variables</h2>" in page
    for field in ("approval_default", "tool_policies", "user_vars"):
        assert f'name="{field}"' in page


def _form(**overrides: str) -> dict:
    return mcp_admin_form(**{"approval_default": "", "tool_policies": "{}", "user_vars": "{}", **overrides})


def test_the_admin_form_saves_policies_and_user_variables(admin_client):
    user_vars = {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True, "required": True}, "ROOT": {}}

    response = admin_client.post(
        reverse("admin:mcp_servers_mcpserver_add"),
        _form(
            approval_default="ask",
            tool_policies=json.dumps({"echo": "allow", "wipe": "deny"}),
            user_vars=json.dumps(user_vars),
        ),
    )

    assert response.status_code == 302, response.content
    server = McpServer.objects.get(name="test")
    assert (server.approval_default, server.tool_policies, server.user_vars) == (
        "ask",
        {"echo": "allow", "wipe": "deny"},
        user_vars,
    )


def test_the_admin_form_clears_policies(admin_client):
    server = stdio_test_server(approval_default="deny", tool_policies={"echo": "allow"}, enabled=False)
    server.save()
    form = _form()
    del form["enabled"]

    response = admin_client.post(_change_url(server), form)

    assert response.status_code == 302, response.content
    server.refresh_from_db()
    assert (server.approval_default, server.tool_policies) == ("", {})


@pytest.mark.parametrize(
    ("field", "value", "errors"),
    [
        ("approval_default", "maybe", ["Select a valid choice. maybe is not one of the available choices."]),
        (
            "tool_policies",
            '{"echo": "sometimes", "add": "ASK"}',
            ["Policy must be one of allow, ask, deny (tools: add, echo)."],
        ),
        ("tool_policies", '["echo"]', ["Must be an object mapping tool names to a policy."]),
        ("tool_policies", "null", ["Must be an object mapping tool names to a policy."]),
        ("tool_policies", '{"echo": "allow"', ["Enter a valid JSON."]),
        ("user_vars", '["TOKEN"]', ["Must be an object mapping variable names to their description."]),
        (
            "user_vars",
            '{"1TOKEN": {}}',
            ["'1TOKEN' is not a variable name (letters, digits and _, not a digit first)."],
        ),
        ("user_vars", '{"TOKEN": "secret"}', ["TOKEN: must be an object."]),
        ("user_vars", '{"TOKEN": {"default": "x"}}', ["TOKEN: unknown key(s) default."]),
        ("user_vars", '{"TOKEN": {"secret": "yes", "title": 1}}', ["TOKEN: wrong type for secret, title."]),
    ],
)
def test_the_admin_form_refuses_bad_values_and_keeps_the_stored_ones(admin_client, field, value, errors):
    server = stdio_test_server(approval_default="ask", tool_policies={"echo": "deny"}, enabled=False)
    server.save()
    form = _form(**{"approval_default": "ask", "tool_policies": '{"echo": "deny"}', field: value})
    del form["enabled"]

    response = admin_client.post(_change_url(server), form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: errors}
    server.refresh_from_db()
    assert (server.approval_default, server.tool_policies, server.user_vars) == ("ask", {"echo": "deny"}, {})
