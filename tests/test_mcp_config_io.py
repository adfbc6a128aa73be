"""import_mcp_config / export_mcp_config: both file formats, upsert, dry run, all-or-nothing, round trip."""

import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from mcp_servers.broadcast import broadcast_config_changed
from mcp_servers.models import McpServer

from .factories import McpServerFactory

pytestmark = pytest.mark.django_db


def write_config(tmp_path, data: object, name: str = "mcp.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def import_config(tmp_path, data: object, *args: str) -> str:
    out = io.StringIO()
    call_command("import_mcp_config", write_config(tmp_path, data), *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[Mapping[str, Any]]:
    return list(McpServer.objects.order_by("name").values())


def fields(name: str) -> Mapping[str, Any]:
    return McpServer.objects.filter(name=name).values(
        "transport",
        "command",
        "args",
        "env",
        "cwd",
        "url",
        "headers",
        "enabled",
        "timeout_seconds",
        "display_name",
        "description",
    )[0]


CLAUDE_CONFIG = {
    "mcpServers": {
        "github": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}"},
        },
        "remote": {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${TOK}"}},
        "legacy": {"type": "sse", "url": "http://localhost:9000/sse", "disabled": True},
        "plain": {"url": "http://localhost:9001/mcp"},
    }
}


def test_import_claude_desktop_format_creates_stdio_and_http_servers(tmp_path):
    out = import_config(tmp_path, CLAUDE_CONFIG)

    assert out == (
        "created github\ncreated remote\ncreated legacy\ncreated plain\n4 created, 0 updated, 0 unchanged.\n"
    )
    assert fields("github") == {
        "transport": "stdio",
        "command": "npx",
        "args": ["-y", "@modelcontextprotocol/server-github"],
        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}"},
        "cwd": "",
        "url": "",
        "headers": {},
        "enabled": True,
        "timeout_seconds": 30,
        "display_name": "",
        "description": "",
    }
    assert fields("remote") == {
        "transport": "streamable_http",
        "command": "",
        "args": [],
        "env": {},
        "cwd": "",
        "url": "https://mcp.example.com/mcp",
        "headers": {"Authorization": "Bearer ${TOK}"},
        "enabled": True,
        "timeout_seconds": 30,
        "display_name": "",
        "description": "",
    }
    assert (fields("legacy")["transport"], fields("legacy")["enabled"]) == ("sse", False)
    assert (fields("plain")["transport"], fields("plain")["url"]) == ("streamable_http", "http://localhost:9001/mcp")


def test_import_seed_format(tmp_path):
    data = {
        "mcp_servers": {
            "files": {
                "transport_type": "stdio",
                "config": {"command": "npx", "args": ["server-filesystem", "/srv"], "env": {}, "cwd": "/srv"},
                "enabled": False,
                "display_name": "Files",
                "description": "The sandbox.",
                "timeout": 60,
            },
            "search": {
                "transport_type": "streamableHttp",
                "config": {"url": "https://search.example.com/mcp", "headers": {"X-Key": "${SEARCH_KEY}"}},
                "is_active": False,
                "timeout": 12.5,
            },
            "events": {"transport_type": "sse", "config": {"url": "http://events:8080/sse"}, "is_active": True},
        }
    }

    out = import_config(tmp_path, data)

    assert out == "created files\ncreated search\ncreated events\n3 created, 0 updated, 0 unchanged.\n"
    assert fields("files") == {
        "transport": "stdio",
        "command": "npx",
        "args": ["server-filesystem", "/srv"],
        "env": {},
        "cwd": "/srv",
        "url": "",
        "headers": {},
        "enabled": False,
        "timeout_seconds": 60,
        "display_name": "Files",
        "description": "The sandbox.",
    }
    assert fields("search") == {
        "transport": "streamable_http",
        "command": "",
        "args": [],
        "env": {},
        "cwd": "",
        "url": "https://search.example.com/mcp",
        "headers": {"X-Key": "${SEARCH_KEY}"},
        "enabled": False,
        # Fractions of a second round up: a timeout never gets shorter than asked.
        "timeout_seconds": 13,
        "display_name": "",
        "description": "",
    }
    assert (fields("events")["transport"], fields("events")["enabled"]) == ("sse", True)


def test_import_vscode_servers_form(tmp_path):
    data = {
        "inputs": [],
        "servers": {
            "time": {"type": "stdio", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
            "docs": {"type": "streamable-http", "url": "https://docs.example.com/mcp"},
        },
    }

    out = import_config(tmp_path, data)

    assert out == "created time\ncreated docs\n2 created, 0 updated, 0 unchanged.\n"
    assert (fields("time")["transport"], fields("time")["args"]) == ("stdio", ["--local-timezone", "UTC"])
    assert (fields("docs")["transport"], fields("docs")["url"]) == ("streamable_http", "https://docs.example.com/mcp")


def test_import_from_stdin():
    out = io.StringIO()

    call_command(
        "import_mcp_config", "-", stdin=io.StringIO(json.dumps({"mcpServers": {"t": {"command": "x"}}})), stdout=out
    )

    assert out.getvalue() == "created t\n1 created, 0 updated, 0 unchanged.\n"
    assert McpServer.objects.get().command == "x"


def test_second_import_updates_only_changed_fields_and_reports_them(tmp_path):
    import_config(tmp_path, CLAUDE_CONFIG)
    McpServer.objects.filter(name="github").update(tool_allowlist=["search_issues"])
    remote_updated_at = McpServer.objects.get(name="remote").updated_at
    changed = json.loads(json.dumps(CLAUDE_CONFIG))
    changed["mcpServers"]["github"]["args"] = ["-y", "@modelcontextprotocol/server-github@1.2.0"]
    changed["mcpServers"]["github"]["env"] = {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GH_TOKEN}"}
    changed["mcpServers"]["legacy"]["disabled"] = False

    out = import_config(tmp_path, changed)

    assert out == (
        "updated github: args, env\n"
        "updated legacy: enabled\n"
        "unchanged remote\n"
        "unchanged plain\n"
        "0 created, 2 updated, 2 unchanged.\n"
    )
    github = McpServer.objects.get(name="github")
    assert github.args == ["-y", "@modelcontextprotocol/server-github@1.2.0"]
    assert github.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GH_TOKEN}"}
    # The file does not describe the allowlist, so an import keeps it.
    assert github.tool_allowlist == ["search_issues"]
    assert McpServer.objects.get(name="legacy").enabled is True
    assert McpServer.objects.get(name="remote").updated_at == remote_updated_at


def test_dry_run_reports_and_writes_nothing(tmp_path, django_capture_on_commit_callbacks):
    McpServerFactory(name="github", command="npx", args=["old"])
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        out = import_config(tmp_path, CLAUDE_CONFIG, "--dry-run")

    assert out == (
        "created remote\ncreated legacy\ncreated plain\nupdated github: args, env\nDry run: nothing was written.\n"
    )
    assert snapshot() == before
    assert callbacks == []


def test_a_bad_entry_fails_the_whole_file_and_writes_nothing(tmp_path):
    McpServerFactory(name="github", command="npx", args=["old"], env={"A": "1"})
    before = snapshot()
    data = json.loads(json.dumps(CLAUDE_CONFIG))
    data["mcpServers"]["broken"] = {"command": "npx", "args": "-y server-broken"}

    with pytest.raises(CommandError, match=r"Server 'broken': 'args' must be a list of strings\."):
        import_config(tmp_path, data)

    assert snapshot() == before


def test_a_stdio_entry_without_command_fails(tmp_path):
    before = snapshot()

    with pytest.raises(CommandError, match=r"Server 'local': a stdio server needs a 'command'\."):
        import_config(tmp_path, {"servers": {"time": {"command": "t"}, "local": {"type": "stdio", "args": ["x"]}}})

    assert snapshot() == before


def test_an_entry_the_model_rejects_rolls_back_the_valid_ones(tmp_path, django_capture_on_commit_callbacks):
    # The shapes parse; the model's own validation (an ftp URL) fails after "time" was already checked.
    McpServerFactory(name="time", command="old-time")
    before = snapshot()
    data = {"mcpServers": {"time": {"command": "mcp-server-time"}, "ftp": {"type": "http", "url": "ftp://files"}}}

    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(CommandError, match=r"Server 'ftp': url: Enter an http:// or https:// URL with a host\."),
    ):
        import_config(tmp_path, data)

    assert snapshot() == before
    assert callbacks == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": "x", "env": {"A": 1}}, "Server 's': 'env' must be an object mapping names to string values."),
        ({"url": "http://h/mcp", "headers": ["a"]}, "Server 's': 'headers' must be an object mapping names"),
        ({"command": "x", "timeout": "soon"}, "Server 's': 'timeout' must be a number of seconds."),
        ({"args": []}, "Server 's': needs a 'command' (stdio) or a 'url' (HTTP)."),
        ({"type": "websocket", "url": "ws://h"}, "Server 's': unknown transport 'websocket'"),
        ("npx server", "Server 's': the entry must be an object."),
    ],
)
def test_malformed_entries_name_the_server_and_the_problem(tmp_path, entry, message):
    with pytest.raises(CommandError) as excinfo:
        import_config(tmp_path, {"mcpServers": {"s": entry}})

    assert message in str(excinfo.value)
    assert McpServer.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "The configuration must be a JSON object."),
        ({"tools": {}}, "Expected a top-level 'mcpServers', 'servers' or 'mcp_servers' object."),
        ({"mcpServers": []}, "'mcpServers' must be an object mapping server names to their configuration."),
    ],
)
def test_unknown_file_shapes_fail(tmp_path, data, message):
    with pytest.raises(CommandError) as excinfo:
        import_config(tmp_path, data)

    assert message in str(excinfo.value)


def test_invalid_json_fails(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {', encoding="utf-8")

    with pytest.raises(CommandError, match=r"mcp\.json is not valid JSON: Expecting property name"):
        call_command("import_mcp_config", str(path))

    assert McpServer.objects.count() == 0


def test_unreadable_file_fails(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.json"):
        call_command("import_mcp_config", str(tmp_path / "missing.json"))


def test_names_are_made_valid_and_the_rename_reported(tmp_path):
    data = {
        "mcpServers": {
            "My Server!!": {"command": "a"},
            "__gh__tools__": {"command": "b"},
            "x" * 45: {"command": "c"},
        }
    }

    out = import_config(tmp_path, data)

    assert out == (
        "renamed 'My Server!!' -> My-Server\n"
        "renamed '__gh__tools__' -> gh_tools\n"
        f"renamed '{'x' * 45}' -> {'x' * 40}\n"
        "created My-Server\n"
        "created gh_tools\n"
        f"created {'x' * 40}\n"
        "3 created, 0 updated, 0 unchanged.\n"
    )
    assert list(McpServer.objects.values_list("command", flat=True).order_by("command")) == ["a", "b", "c"]


def test_two_names_that_become_the_same_fail(tmp_path):
    with pytest.raises(CommandError, match=r"Server 'my tools': becomes 'my-tools', which is already the name of"):
        import_config(tmp_path, {"mcpServers": {"my-tools": {"command": "a"}, "my tools": {"command": "b"}}})


def test_export_prints_claude_desktop_json():
    McpServerFactory(name="time", command="mcp-server-time")
    McpServerFactory(
        name="remote",
        transport="sse",
        command="",
        url="http://h:9000/sse",
        headers={"X-Key": "${KEY}"},
        enabled=False,
        display_name="Remote",
        timeout_seconds=90,
    )
    out = io.StringIO()

    call_command("export_mcp_config", stdout=out)

    assert out.getvalue() == (
        "{\n"
        '  "mcpServers": {\n'
        '    "remote": {\n'
        '      "disabled": true,\n'
        '      "display_name": "Remote",\n'
        '      "headers": {\n'
        '        "X-Key": "${KEY}"\n'
        "      },\n"
        '      "timeout": 90,\n'
        '      "type": "sse",\n'
        '      "url": "http://h:9000/sse"\n'
        "    },\n"
        '    "time": {\n'
        '      "args": [],\n'
        '      "command": "mcp-server-time",\n'
        '      "env": {}\n'
        "    }\n"
        "  }\n"
        "}\n"
    )


def test_export_then_import_round_trips_to_unchanged(tmp_path, django_capture_on_commit_callbacks):
    McpServerFactory(
        name="files",
        command="npx",
        args=["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
        env={"TOKEN": "${TOKEN}"},
        cwd="/srv",
        display_name="Files",
        description="Sandboxed files.",
        timeout_seconds=60,
    )
    McpServerFactory(name="remote", transport="streamable_http", command="", url="https://h/mcp", headers={"A": "b"})
    McpServerFactory(name="legacy", transport="sse", command="", url="http://h/sse", enabled=False)
    before = snapshot()
    path = tmp_path / "export.json"
    call_command("export_mcp_config", "--output", str(path), stderr=io.StringIO())

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("import_mcp_config", str(path), stdout=out)

    assert out.getvalue() == "unchanged files\nunchanged legacy\nunchanged remote\n0 created, 0 updated, 3 unchanged.\n"
    assert snapshot() == before
    assert callbacks == []


def _export(*args: str) -> dict:
    out = io.StringIO()
    call_command("export_mcp_config", *args, stdout=out)
    return json.loads(out.getvalue())["mcpServers"]


def test_export_masks_env_and_header_values_unless_asked_for_them():
    McpServerFactory(name="local", command="srv", env={"TOKEN": "s3cret-value", "REF": "${TOKEN}"})
    McpServerFactory(name="remote", transport="streamable_http", command="", url="https://h/mcp", headers={"A": "b"})

    masked, full = _export(), _export("--include-secrets")

    assert (masked["local"]["env"], masked["remote"]["headers"]) == (
        {"TOKEN": "********", "REF": "${TOKEN}"},
        {"A": "********"},
    )
    assert (full["local"]["env"], full["remote"]["headers"]) == (
        {"TOKEN": "s3cret-value", "REF": "${TOKEN}"},
        {"A": "b"},
    )


def test_importing_a_masked_value_keeps_the_stored_one(tmp_path):
    McpServerFactory(name="local", command="srv", env={"TOKEN": "s3cret-value"})
    config = {"mcpServers": {"local": {"command": "srv", "env": {"TOKEN": "********", "NEW": "v4lue"}}}}

    output = import_config(tmp_path, config)

    assert output == "updated local: env\n0 created, 1 updated, 0 unchanged.\n"
    assert fields("local")["env"] == {"TOKEN": "s3cret-value", "NEW": "v4lue"}


def test_a_masked_value_with_nothing_stored_fails(tmp_path):
    config = {"mcpServers": {"local": {"command": "srv", "env": {"TOKEN": "********"}}}}

    with pytest.raises(CommandError, match=r"Server 'local': env TOKEN: masked, and no stored value to keep\."):
        import_config(tmp_path, config)
    assert snapshot() == []


def test_a_successful_import_schedules_exactly_one_broadcast(tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        import_config(tmp_path, CLAUDE_CONFIG)

    assert callbacks == [broadcast_config_changed]
