"""import_mcp_config / export_mcp_config with the governance keys: approval policies, user variables,
access and denied tools; strict entry keys; errors in a dry run and a real import; the round trip."""

import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from accounts.models import User
from mcp_servers.config_io import ServerAccess, mcp_config_parse
from mcp_servers.models import McpServer

from .factories import McpServerFactory, UserFactory

pytestmark = pytest.mark.django_db


def import_config(tmp_path, data: object, *args: str) -> str:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    out = io.StringIO()
    call_command("import_mcp_config", str(path), *args, stdout=out)
    return out.getvalue()


def export_config(*args: str) -> dict:
    out = io.StringIO()
    call_command("export_mcp_config", *args, stdout=out)
    return json.loads(out.getvalue())


def governance(name: str) -> dict[str, Any]:
    """Everything an entry's governance keys set on the row."""
    server = McpServer.objects.get(name=name)
    return {
        "access_restricted": server.access_restricted,
        "allowed_users": sorted(user.username for user in server.allowed_users.all()),
        "allowed_groups": sorted(group.name for group in server.allowed_groups.all()),
        "denied_tools": server.denied_tools,
        "approval_default": server.approval_default,
        "tool_policies": server.tool_policies,
        "user_vars": server.user_vars,
    }


def snapshot() -> list[dict[str, Any]]:
    return [{**row, **governance(row["name"])} for row in McpServer.objects.order_by("name").values()]


# The example entry.
FILESYSTEM = {
    "command": "npx",
    "args": ["-y", "@modelcontextprotocol/server-filesystem", "workspace/{{user.id}}"],
    "access": {"users": ["some-username"], "groups": ["research"]},
    "approval": {"default": "ask", "tools": {"read_text_file": "allow", "write_file": "ask", "move_file": "deny"}},
    "user_vars": {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}},
}


@pytest.fixture
def people():
    UserFactory(username="some-username")
    UserFactory(username="alice")
    Group.objects.create(name="research")
    Group.objects.create(name="ops")


# --- parsing ------------------------------------------------------------------------------------------


def test_parse_reads_approval_and_user_vars():
    [server] = mcp_config_parse({"mcpServers": {"filesystem": FILESYSTEM}})

    assert server.access == ServerAccess(users=("some-username",), groups=("research",))
    assert server.approval_default == "ask"
    assert server.tool_policies == {"read_text_file": "allow", "write_file": "ask", "move_file": "deny"}
    assert server.user_vars == {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}}
    assert server.ignored_keys == ()


@pytest.mark.parametrize(
    ("approval", "expected"),
    [
        ({"tools": {"write_file": "ask"}}, ("", {"write_file": "ask"})),
        ({"default": "deny"}, ("deny", {})),
        ({"default": "", "tools": {}}, ("", {})),
        ({"default": None}, ("", {})),
        ({}, ("", {})),
    ],
)
def test_parse_approval_default_and_tools_are_each_optional(approval, expected):
    [server] = mcp_config_parse({"mcpServers": {"s": {"command": "x", "approval": approval}}})

    assert (server.approval_default, server.tool_policies) == expected


def test_parse_without_the_governance_keys_gives_an_open_server_with_no_policies():
    [server] = mcp_config_parse({"mcpServers": {"s": {"command": "x"}}})

    assert (server.access, server.denied_tools, server.approval_default, server.tool_policies, server.user_vars) == (
        None,
        [],
        "",
        {},
        {},
    )


def test_parse_seed_format_reads_the_governance_keys():
    data = {
        "mcp_servers": {
            "files": {
                "transport_type": "stdio",
                "config": {"command": "npx", "args": ["server-filesystem"]},
                "approval": {"default": "allow", "tools": {"write_file": "ask"}},
                "user_vars": {"ROOT": {"description": "Your folder", "required": True}},
                "denied_tools": ["move_file"],
            }
        }
    }

    [server] = mcp_config_parse(data)

    assert (server.approval_default, server.tool_policies, server.user_vars, server.denied_tools) == (
        "allow",
        {"write_file": "ask"},
        {"ROOT": {"description": "Your folder", "required": True}},
        ["move_file"],
    )


# --- import ---------------------------------------------------------------------------------------------


def test_import_sets_every_governance_field(tmp_path, people):
    out = import_config(tmp_path, {"mcpServers": {"filesystem": {**FILESYSTEM, "denied_tools": ["edit_file"]}}})

    assert out == "created filesystem\n1 created, 0 updated, 0 unchanged.\n"
    assert governance("filesystem") == {
        "access_restricted": True,
        "allowed_users": ["some-username"],
        "allowed_groups": ["research"],
        "denied_tools": ["edit_file"],
        "approval_default": "ask",
        "tool_policies": {"read_text_file": "allow", "write_file": "ask", "move_file": "deny"},
        "user_vars": {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}},
    }


def test_a_second_import_reports_changed_policies_and_variables(tmp_path, people):
    import_config(tmp_path, {"mcpServers": {"filesystem": FILESYSTEM}})
    changed = {
        **FILESYSTEM,
        "approval": {"default": "ask", "tools": {"write_file": "deny"}},
        "user_vars": {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True, "required": True}},
    }

    out = import_config(tmp_path, {"mcpServers": {"filesystem": changed}})

    assert out == "updated filesystem: tool_policies, user_vars\n0 created, 1 updated, 0 unchanged.\n"
    assert governance("filesystem")["tool_policies"] == {"write_file": "deny"}
    assert governance("filesystem")["user_vars"] == {
        "GITHUB_TOKEN": {"title": "GitHub token", "secret": True, "required": True}
    }


def test_an_entry_without_approval_or_user_vars_clears_them(tmp_path, people):
    # The file describes the server whole, as it does for access and denied tools.
    import_config(tmp_path, {"mcpServers": {"filesystem": FILESYSTEM}})
    bare = {key: value for key, value in FILESYSTEM.items() if key not in ("approval", "user_vars")}

    out = import_config(tmp_path, {"mcpServers": {"filesystem": bare}})

    assert out == (
        "updated filesystem: approval_default, tool_policies, user_vars\n0 created, 1 updated, 0 unchanged.\n"
    )
    assert (governance("filesystem")["approval_default"], governance("filesystem")["tool_policies"]) == ("", {})
    assert governance("filesystem")["user_vars"] == {}


def test_dry_run_reports_policy_changes_and_writes_nothing(tmp_path, people, django_capture_on_commit_callbacks):
    McpServerFactory(name="filesystem", command="npx", args=FILESYSTEM["args"], approval_default="deny")
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        out = import_config(tmp_path, {"mcpServers": {"filesystem": FILESYSTEM}}, "--dry-run")

    assert out == (
        "updated filesystem: approval_default, tool_policies, user_vars, access_restricted, allowed_users,"
        " allowed_groups\nDry run: nothing was written.\n"
    )
    assert snapshot() == before
    assert callbacks == []


def test_vscode_client_side_keys_are_accepted_and_reported_as_ignored(tmp_path):
    data = {
        "servers": {
            "github": {
                "type": "http",
                "url": "https://api.githubcopilot.com/mcp/",
                "gallery": "https://api.mcp.github.com",
                "version": "1.0.3",
            },
            "local": {
                "type": "stdio",
                "command": "node",
                "args": ["server.js"],
                "envFile": "${workspaceFolder}/.env",
                "dev": {"watch": "src/**/*.ts", "debug": {"type": "node"}},
            },
        }
    }

    out = import_config(tmp_path, data)

    assert out == (
        "ignored in github: gallery, version (client-side settings)\n"
        "ignored in local: dev, envFile (client-side settings)\n"
        "created github\ncreated local\n2 created, 0 updated, 0 unchanged.\n"
    )


# --- errors: the whole file, in a dry run and a real import ----------------------------------------

DESKTOP_KEYS_HINT = (
    "(known: access, approval, args, auth, command, cwd, denied_tools, description, disabled, display_name, env,"
    " headers, oauth_client_id, oauth_client_secret, oauth_issuer, oauth_scopes, roots, timeout, type, url,"
    " user_vars)."
)


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        # Keys no format defines: a typo must not silently drop a policy.
        ({"aproval": {"default": "ask"}}, f"Server 'files': unknown key(s): aproval {DESKTOP_KEYS_HINT}"),
        ({"autoApprove": ["read_file"]}, f"Server 'files': unknown key(s): autoApprove {DESKTOP_KEYS_HINT}"),
        # approval
        ({"approval": "ask"}, "Server 'files': 'approval' must be an object with 'default' and 'tools'."),
        (
            {"approval": {"default": "ask", "tool": {"x": "deny"}}},
            "Server 'files': unknown key(s) in 'approval': tool (use 'default', 'tools').",
        ),
        (
            {"approval": {"default": "maybe"}},
            "Server 'files' approval 'default': policy 'maybe' is not one of allow, ask, deny.",
        ),
        (
            {"approval": {"default": True}},
            "Server 'files' approval 'default': policy True is not one of allow, ask, deny.",
        ),
        (
            {"approval": {"tools": {"write_file": "ASK"}}},
            "Server 'files' approval tool 'write_file': policy 'ASK' is not one of allow, ask, deny.",
        ),
        (
            {"approval": {"tools": ["write_file"]}},
            "Server 'files': approval 'tools' must be an object mapping tool names to a policy.",
        ),
        ({"approval": {"tools": {"": "deny"}}}, "Server 'files': approval 'tools' has an empty tool name."),
        # user_vars
        (
            {"user_vars": ["GITHUB_TOKEN"]},
            "Server 'files': 'user_vars' must be an object mapping variable names to their description.",
        ),
        (
            {"user_vars": {"GITHUB-TOKEN": {}}},
            "Server 'files': user_vars 'GITHUB-TOKEN' is not a variable name"
            " (letters, digits and _, not a digit first).",
        ),
        ({"user_vars": {"TOKEN": "secret"}}, "Server 'files': user_vars 'TOKEN' must be an object."),
        (
            {"user_vars": {"TOKEN": {"title": "Token", "default": "x"}}},
            "Server 'files': unknown key(s) in user_vars 'TOKEN': default"
            " (use 'title', 'description', 'secret', 'required').",
        ),
        (
            {"user_vars": {"TOKEN": {"secret": "yes"}}},
            "Server 'files': user_vars 'TOKEN' 'secret' must be true or false.",
        ),
        ({"user_vars": {"TOKEN": {"title": 7}}}, "Server 'files': user_vars 'TOKEN' 'title' must be a string."),
        # access
        (
            {"access": {"users": ["alice", "nobody"], "groups": ["research"]}},
            "Server 'files': access: unknown user(s): nobody.",
        ),
        ({"access": {"groups": ["research", "ghosts"]}}, "Server 'files': access: unknown group(s): ghosts."),
        (
            {"access": {"users": ["alice"], "roles": ["admin"]}},
            "Server 'files': unknown key(s) in 'access': roles (use 'users', 'groups').",
        ),
    ],
)
def test_a_bad_governance_key_fails_the_whole_file(tmp_path, people, entry, message, dry_run):
    # given a server the file would update and a valid entry before the bad one
    McpServerFactory(name="files", command="srv", approval_default="deny")
    before = snapshot()
    config = {
        "mcpServers": {
            "time": {"command": "mcp-server-time", "approval": {"default": "allow"}},
            "files": {"command": "srv", **entry},
        }
    }

    with pytest.raises(CommandError) as error:
        import_config(tmp_path, config, *(["--dry-run"] if dry_run else []))

    assert str(error.value).endswith(f"nothing was imported.\n{message}")
    assert snapshot() == before


def test_every_failing_entry_is_named(tmp_path, people):
    config = {
        "mcpServers": {
            "one": {"command": "srv", "access": {"users": ["nobody"]}},
            "two": {"command": "srv", "access": {"groups": ["ghosts"]}},
        }
    }

    with pytest.raises(CommandError) as error:
        import_config(tmp_path, config)

    assert str(error.value).endswith(
        "Server 'one': access: unknown user(s): nobody.\nServer 'two': access: unknown group(s): ghosts."
    )
    assert McpServer.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"mcp_servers": {"s": {"config": {"command": "x"}, "gallery": "https://api.mcp.github.com"}}},
            "Server 's': unknown key(s): gallery (known: access, approval, auth, config, denied_tools, description,"
            " display_name, enabled, is_active, oauth_client_id, oauth_client_secret, oauth_issuer, oauth_scopes,"
            " roots, timeout, transport_type, user_vars).",
        ),
        (
            {"mcp_servers": {"s": {"config": {"command": "x", "type": "stdio"}}}},
            "Server 's' config: unknown key(s): type (known: args, command, cwd, env, headers, url).",
        ),
    ],
)
def test_seed_format_keys_are_strict_too(tmp_path, data, message):
    with pytest.raises(CommandError) as error:
        import_config(tmp_path, data)

    assert str(error.value).endswith(message)
    assert McpServer.objects.count() == 0


# --- export and the round trip -------------------------------------------------------------------------


def test_export_writes_approval_and_user_vars_only_when_set():
    McpServerFactory(
        name="files",
        command="npx",
        approval_default="ask",
        tool_policies={"read_text_file": "allow", "move_file": "deny"},
        user_vars={"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}},
    )
    McpServerFactory(name="only-default", command="a", approval_default="deny")
    McpServerFactory(name="only-tools", command="b", tool_policies={"write_file": "ask"})
    McpServerFactory(name="plain", command="c")

    exported = export_config()["mcpServers"]

    assert exported["files"] == {
        "command": "npx",
        "args": [],
        "env": {},
        "approval": {"default": "ask", "tools": {"read_text_file": "allow", "move_file": "deny"}},
        "user_vars": {"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}},
    }
    assert exported["only-default"]["approval"] == {"default": "deny"}
    assert exported["only-tools"]["approval"] == {"tools": {"write_file": "ask"}}
    assert "user_vars" not in exported["only-tools"]
    assert exported["plain"] == {"command": "c", "args": [], "env": {}}


def test_export_then_import_gives_back_the_same_configuration(tmp_path, people, django_capture_on_commit_callbacks):
    # given servers using every governance field, in different combinations
    research, ops = Group.objects.get(name="research"), Group.objects.get(name="ops")
    files = McpServerFactory(
        name="files",
        display_name="Files",
        description="Each user's sandbox.",
        command="npx",
        args=["-y", "@modelcontextprotocol/server-filesystem", "workspace/{{user.id}}"],
        env={"TOKEN": "s3cret-value"},
        cwd="/srv",
        timeout_seconds=60,
        access_restricted=True,
        denied_tools=["move_file", "edit_file"],
        approval_default="ask",
        tool_policies={"read_text_file": "allow", "write_file": "ask", "move_file": "deny"},
        user_vars={
            "GITHUB_TOKEN": {"title": "GitHub token", "secret": True, "required": True},
            "ROOT": {"description": "Your folder", "secret": False},
        },
    )
    files.allowed_users.set(User.objects.filter(username__in=["alice", "some-username"]))
    files.allowed_groups.set([research, ops])
    McpServerFactory(
        name="remote",
        transport="streamable_http",
        command="",
        url="https://h/mcp",
        access_restricted=True,
        tool_policies={"search": "deny"},
        user_vars={"API_KEY": {}},
    )
    McpServerFactory(name="time", command="mcp-server-time", approval_default="allow")
    McpServerFactory(name="open", command="srv")
    before = snapshot()
    path = tmp_path / "export.json"
    # (a full backup: with the env values, so the rows can be made again from nothing)
    call_command("export_mcp_config", "--output", str(path), "--include-secrets", stderr=io.StringIO())

    # when every server is deleted and the export imported back
    McpServer.objects.all().delete()
    created = io.StringIO()
    call_command("import_mcp_config", str(path), stdout=created)
    again = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("import_mcp_config", str(path), stdout=again)

    # then every field is as it was, and a second import changes nothing
    assert created.getvalue().endswith("4 created, 0 updated, 0 unchanged.\n")
    after = snapshot()
    assert [row["name"] for row in after] == ["files", "open", "remote", "time"]
    for old, new in zip(before, after, strict=True):
        for field in (
            "display_name",
            "description",
            "transport",
            "command",
            "args",
            "env",
            "cwd",
            "url",
            "headers",
            "enabled",
            "timeout_seconds",
            "access_restricted",
            "allowed_users",
            "allowed_groups",
            "denied_tools",
            "approval_default",
            "tool_policies",
            "user_vars",
        ):
            assert new[field] == old[field], f"{old['name']}.{field}"
    assert again.getvalue() == "unchanged files\nunchanged open\nunchanged remote\nunchanged time\n" + (
        "0 created, 0 updated, 4 unchanged.\n"
    )
    assert callbacks == []


def test_an_export_imports_back_unchanged_over_the_same_rows(tmp_path, people):
    server = McpServerFactory(
        name="files",
        command="npx",
        env={"TOKEN": "s3cret-value"},
        approval_default="deny",
        tool_policies={"read_text_file": "allow"},
        user_vars={"GITHUB_TOKEN": {"title": "GitHub token", "secret": True}},
        access_restricted=True,
    )
    server.allowed_groups.set([Group.objects.get(name="research")])
    before = snapshot()

    out = import_config(tmp_path, export_config())

    assert out == "unchanged files\n0 created, 0 updated, 1 unchanged.\n"
    assert snapshot() == before


# --- OAuth settings -------------------------------------------------------------------------------------


def test_oauth_settings_round_trip_with_the_client_secret_masked(tmp_path):
    # given an OAuth server with a pre-registered client and a client-credentials one with a ${VAR} secret
    McpServerFactory(
        name="github",
        transport="streamable_http",
        command="",
        url="https://api.example.com/mcp",
        auth="oauth",
        oauth_client_id="platform-client",
        oauth_client_secret="s3cret-client-value",
        oauth_scopes="repo read:user",
    )
    McpServerFactory(
        name="machine",
        transport="streamable_http",
        command="",
        url="https://m.example.com/mcp",
        auth="client_credentials",
        oauth_client_id="machine",
        oauth_client_secret="${MACHINE_SECRET}",
        oauth_issuer="https://auth.example.com",
    )
    McpServerFactory(name="plain", transport="streamable_http", command="", url="https://p.example.com/mcp")
    fields = ("auth", "oauth_client_id", "oauth_client_secret", "oauth_scopes", "oauth_issuer")
    before = list(McpServer.objects.order_by("name").values("name", *fields))

    # when exported without secrets
    exported = export_config()

    # then the secret is masked, a reference is not, and a server without OAuth has no OAuth keys
    assert {key: value for key, value in exported["mcpServers"]["github"].items() if key in fields} == {
        "auth": "oauth",
        "oauth_client_id": "platform-client",
        "oauth_client_secret": "********",
        "oauth_scopes": "repo read:user",
    }
    assert exported["mcpServers"]["machine"]["oauth_client_secret"] == "${MACHINE_SECRET}"
    assert exported["mcpServers"]["machine"]["oauth_issuer"] == "https://auth.example.com"
    assert not set(fields) & set(exported["mcpServers"]["plain"])
    # re-importing the masked export keeps the stored secret and changes nothing
    assert import_config(tmp_path, exported).endswith("0 created, 0 updated, 3 unchanged.\n")
    assert list(McpServer.objects.order_by("name").values("name", *fields)) == before
    # a full backup makes the rows again from nothing
    backup = export_config("--include-secrets")
    McpServer.objects.all().delete()
    assert import_config(tmp_path, backup).endswith("3 created, 0 updated, 0 unchanged.\n")
    assert list(McpServer.objects.order_by("name").values("name", *fields)) == before


def test_a_masked_client_secret_with_nothing_stored_and_an_unknown_auth_are_errors(tmp_path):
    entry = {"url": "https://api.example.com/mcp", "auth": "oauth", "oauth_client_secret": "********"}

    with pytest.raises(CommandError, match="oauth_client_secret: masked, and no stored value to keep"):
        import_config(tmp_path, {"mcpServers": {"github": entry}})
    with pytest.raises(CommandError, match="'auth' must be one of none, oauth, client_credentials"):
        import_config(tmp_path, {"mcpServers": {"github": {**entry, "auth": "magic"}}})
    assert McpServer.objects.count() == 0
