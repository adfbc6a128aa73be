"""The MCP REST API (/api/mcp/...) against real MCP server processes: the test server over stdio
and mcp-server-time (for tool annotations), through this process's MCP host."""

import sys
import time
from pathlib import Path

import pytest
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from mcp_servers.services import mcp_server_save

from .conftest import TEST_MCP_SERVER, client_for, stdio_test_server, wait_until
from .factories import UserFactory

# The host reads McpServer rows from its own thread: rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

TEST = "/api/mcp/servers/test"
MISSING_COMMAND = "/nonexistent/mcp-server"
MISSING_COMMAND_ERROR = f"FileNotFoundError: [Errno 2] No such file or directory: '{MISSING_COMMAND}'"
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
READ_ONLY_HINTS = {"destructiveHint": False, "idempotentHint": True, "openWorldHint": False, "readOnlyHint": True}
FORBIDDEN = {
    "error": {
        "code": "permission_denied",
        "message": "You do not have permission to perform this action.",
        "details": None,
    }
}


@pytest.fixture
def staff_api(db):
    return client_for(UserFactory(username="root", is_staff=True))


@pytest.fixture
def connected():
    """The test server, saved and connected."""
    server = stdio_test_server()
    server.save()
    get_host().ready(10)
    return server


@pytest.fixture
def slow_retries(settings):
    # A failed server retries after a minute instead of half a second, so it stays "error"
    # rather than passing through "connecting" while a test looks at it.
    settings.MCP_RESTART_BACKOFF_INITIAL = 60
    settings.MCP_RESTART_BACKOFF_MAX = 60


def _broken_server(name: str = "broken") -> McpServer:
    return McpServer.objects.create(name=name, transport="stdio", command=MISSING_COMMAND)


def _wait_for_status(name: str, status: str) -> None:
    wait_until(lambda: any(s.name == name and s.status == status for s in get_host().statuses()), 10)


def _call(client, tool: str, arguments, server: str = "test"):
    return client.post(f"/api/mcp/servers/{server}/tools/{tool}/call", {"arguments": arguments}, format="json")


def _unknown_server(name: str) -> dict:
    return {"error": {"code": "unknown_mcp_server", "message": f"Unknown MCP server {name!r}.", "details": None}}


# --- status and servers ------------------------------------------------------------------------


def test_status_counts_servers_by_status_and_totals_their_tools(api, slow_retries):
    # given one connected, one failing and one disabled server
    stdio_test_server().save()
    _broken_server()
    stdio_test_server(name="off", enabled=False).save()
    get_host().ready(10)
    _wait_for_status("broken", "error")

    # when
    response = api.get("/api/mcp/status")

    # then
    assert response.status_code == 200
    assert response.json() == {
        "servers": {
            "connected": 1,
            "connecting": 0,
            "error": 1,
            "disabled": 1,
            "per-user": 0,
            "needs-setup": 0,
            "needs-sign-in": 0,
        },
        "total_servers": 3,
        "total_tools": 11,
    }


def test_server_detail_shows_the_live_connection(api, connected):
    response = api.get(TEST)

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "test"
    assert body["transport"] == "stdio"
    assert body["enabled"] is True
    assert body["timeout_seconds"] == 30
    live = body["live"]
    assert live["status"] == "connected"
    assert live["last_error"] is None
    assert live["server_name"] == "platform-test-server"
    assert live["instructions"] == "A server for the platform's tests."
    assert live["protocol_version"] in MODERN_PROTOCOL_VERSIONS
    assert set(live["capabilities"]) == {"prompts", "resources", "tools"}
    assert live["connected_since"] is not None
    assert live["tool_count"] == 11
    assert (live["calls"], live["errors"], live["last_call_ms"]) == (0, 0, None)


def test_server_list_gives_every_row_with_its_live_status(api, slow_retries):
    stdio_test_server().save()
    _broken_server()
    get_host().ready(10)
    _wait_for_status("broken", "error")

    response = api.get("/api/mcp/servers")

    assert response.status_code == 200
    live = {server["name"]: server["live"] for server in response.json()}
    assert list(live) == ["broken", "test"]
    assert (live["test"]["status"], live["test"]["tool_count"]) == ("connected", 11)
    assert (live["broken"]["status"], live["broken"]["tool_count"]) == ("error", 0)
    assert live["broken"]["last_error_at"] is not None


def test_only_staff_see_why_a_server_is_down(api, staff_api, slow_retries):
    # given a server whose error names a path on the host
    _broken_server()
    _wait_for_status("broken", "error")

    # when each asks for it, its list and its tools
    urls = ("/api/mcp/servers", "/api/mcp/servers/broken", "/api/mcp/servers/broken/tools")
    user_responses = [api.get(url) for url in urls]
    staff = staff_api.get("/api/mcp/servers/broken").json()

    # then a user sees the status only, staff see the reason
    assert [response.status_code for response in user_responses] == [200, 200, 503]
    for response in user_responses:
        assert MISSING_COMMAND not in response.content.decode()
    assert user_responses[1].json()["live"]["status"] == "error"
    assert user_responses[1].json()["live"]["last_error"] is None
    assert staff["live"]["last_error"] == MISSING_COMMAND_ERROR


def test_env_and_header_values_never_appear_even_to_staff(staff_api):
    stdio_test_server(env={"API_TOKEN": "s3cret-value"}).save()
    McpServer.objects.create(
        name="remote",
        transport="streamable_http",
        url="http://127.0.0.1:9/mcp",
        headers={"Authorization": "Bearer h3ader-value"},
    )
    get_host().ready(10)

    responses = [staff_api.get(url) for url in ("/api/mcp/servers", TEST, "/api/mcp/servers/remote")]

    assert [response.status_code for response in responses] == [200, 200, 200]
    for response in responses:
        text = response.content.decode()
        assert "s3cret-value" not in text
        assert "h3ader-value" not in text


def test_staff_see_command_args_and_url_with_secrets_redacted(staff_api, monkeypatch):
    # given secrets in env, a header, the URL's password and query, some of them quoted in args
    monkeypatch.setenv("PLATFORM_TEST_TOKEN", "from-the-environment")
    McpServer.objects.create(
        name="test",
        command="/opt/s3cret-value/server",
        args=["--token=s3cret-value", "--other=from-the-environment"],
        env={"API_TOKEN": "s3cret-value", "OTHER": "${PLATFORM_TEST_TOKEN}"},
        enabled=False,
    )
    McpServer.objects.create(
        name="remote",
        transport="streamable_http",
        url="http://app:p4ssw0rd@127.0.0.1:9/mcp?token=qu3ry-token&v=1",
        headers={"Authorization": "Bearer h3ader-value"},
        enabled=False,
    )

    # when
    stdio = staff_api.get(TEST).json()
    remote = staff_api.get("/api/mcp/servers/remote").json()

    # then
    assert (stdio["command"], stdio["args"]) == ("/opt/***/server", ["--token=***", "--other=***"])
    assert remote["url"] == "http://app:***@127.0.0.1:9/mcp?token=***&v=1"


def test_a_servers_error_message_is_redacted_of_its_secrets(api):
    stdio_test_server(env={"API_TOKEN": "s3cret-value"}).save()
    get_host().ready(10)

    # the server's "unknown resource" message quotes the URI, which here holds the token
    response = api.get(f"{TEST}/resources/read", {"uri": "nothing://s3cret-value"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "mcp_not_found", "message": "Unknown resource: nothing://***", "details": None}
    }


def test_env_keys_and_header_names_are_listed(api):
    stdio_test_server(
        env={"API_TOKEN": "s3cret-value", "A_FLAG": "1"}, headers={"X-Key": "h3ader-value"}, enabled=False
    ).save()

    body = api.get(TEST).json()

    assert body["env_keys"] == ["API_TOKEN", "A_FLAG"]
    assert body["header_names"] == ["X-Key"]


def test_non_staff_get_no_command_args_or_url(api):
    stdio_test_server(enabled=False).save()  # configuration only: no process needed

    body = api.get(TEST).json()

    assert (body["command"], body["args"], body["url"]) == (None, None, None)


def test_staff_get_the_command_and_args(staff_api):
    stdio_test_server(enabled=False).save()

    body = staff_api.get(TEST).json()

    assert (body["command"], body["args"], body["url"]) == (sys.executable, [TEST_MCP_SERVER, "stdio"], "")


def test_staff_get_the_url_of_an_http_server(staff_api):
    McpServer.objects.create(name="remote", transport="streamable_http", url="http://127.0.0.1:9/mcp")

    body = staff_api.get("/api/mcp/servers/remote").json()

    assert (body["command"], body["args"], body["url"]) == ("", [], "http://127.0.0.1:9/mcp")


def test_unknown_server_is_404(api):
    response = api.get("/api/mcp/servers/nope")

    assert response.status_code == 404
    assert response.json() == _unknown_server("nope")


# --- tools -------------------------------------------------------------------------------------


def test_tools_are_offered_under_namespaced_names_with_their_schemas(api, connected):
    response = api.get("/api/mcp/tools")

    assert response.status_code == 200
    tools = response.json()
    names = [tool["name"] for tool in tools]
    long_name = next(name for name in names if name.startswith("test__a_tool_with"))
    assert len(long_name) == 64  # cut to the providers' limit, with a hash suffix
    assert [name for name in names if name != long_name] == [
        "test__echo",
        "test__wipe",
        "test__peek",
        "test__add",
        "test__slow",
        "test__rendezvous",
        "test__fail",
        "test__pid",
        "test__env",
        "test__toggle_extra",
    ]
    assert tools[0] == {
        "name": "test__echo",
        "server": "test",
        "tool": "echo",
        "title": None,
        "description": "Echo the text back.",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"title": "Text", "type": "string"}},
            "required": ["text"],
            "title": "echoArguments",
        },
        "output_schema": {
            "properties": {"result": {"title": "Result", "type": "string"}},
            "required": ["result"],
            "title": "echoOutput",
            "type": "object",
        },
        "annotations": {},
    }


def test_server_tools_lists_only_that_servers_tools_with_annotations(api):
    stdio_test_server().save()
    McpServer.objects.create(name="time", transport="stdio", command=TIME_SERVER)
    get_host().ready(10)

    response = api.get("/api/mcp/servers/time/tools")

    assert response.status_code == 200
    tools = response.json()
    assert [tool["name"] for tool in tools] == ["time__get_current_time", "time__convert_time"]
    assert [tool["annotations"] for tool in tools] == [READ_ONLY_HINTS, READ_ONLY_HINTS]


def test_all_tools_span_every_connected_server(api):
    stdio_test_server().save()
    McpServer.objects.create(name="time", transport="stdio", command=TIME_SERVER)
    get_host().ready(10)

    names = [tool["name"] for tool in api.get("/api/mcp/tools").json()]

    assert len(names) == 13
    assert {"test__echo", "time__get_current_time", "time__convert_time"} <= set(names)


def test_tool_allowlist_limits_the_tools_offered(api):
    stdio_test_server(tool_allowlist=["echo", "add"]).save()
    get_host().ready(10)

    response = api.get(f"{TEST}/tools")

    assert [tool["name"] for tool in response.json()] == ["test__echo", "test__add"]


def test_disabled_servers_tools_are_503(api):
    stdio_test_server(enabled=False).save()

    response = api.get(f"{TEST}/tools")

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "mcp_server_unavailable",
            "message": "MCP server 'test' is disabled",
            "details": {"status": "disabled", "reason": None},
        }
    }


def test_tools_of_a_server_that_cannot_start_are_503(api, slow_retries):
    _broken_server()
    _wait_for_status("broken", "error")

    response = api.get("/api/mcp/servers/broken/tools")

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "mcp_server_unavailable",
            "message": "MCP server 'broken' is error",
            "details": {"status": "error", "reason": None},
        }
    }


def test_staff_get_the_reason_a_server_cannot_start(staff_api, slow_retries):
    _broken_server()
    _wait_for_status("broken", "error")

    response = staff_api.get("/api/mcp/servers/broken/tools")

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "mcp_server_unavailable",
            "message": f"MCP server 'broken' is error: {MISSING_COMMAND_ERROR}",
            "details": {"status": "error", "reason": MISSING_COMMAND_ERROR},
        }
    }


def test_tool_list_does_not_wait_out_a_server_whose_first_connection_failed(api, settings, slow_retries):
    # given a server that starts, answers nothing and exits: its first connection fails after ~0.3 s
    settings.MCP_READY_WAIT = 4
    McpServer.objects.create(
        name="quits", transport="stdio", command=sys.executable, args=["-c", "import time; time.sleep(0.3)"]
    )

    # when the first request waits for servers that are still connecting
    started = time.monotonic()
    response = api.get("/api/mcp/tools")
    elapsed = time.monotonic() - started

    # then it stops waiting once that attempt failed, well before MCP_READY_WAIT
    assert response.status_code == 200
    assert response.json() == []
    assert elapsed < 2


def test_unknown_servers_tools_are_404(api):
    response = api.get("/api/mcp/servers/nope/tools")

    assert response.status_code == 404
    assert response.json() == _unknown_server("nope")


# --- tool calls ----------------------------------------------------------------------------------


def test_non_staff_cannot_call_a_tool_and_it_does_not_run(api, connected):
    response = _call(api, "echo", {"text": "hi"})

    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert api.get(TEST).json()["live"]["calls"] == 0


def test_tool_calls_are_counted_in_the_live_status(staff_api, connected):
    _call(staff_api, "echo", {"text": "hi"})
    _call(staff_api, "fail", {"message": "boom"})

    live = staff_api.get(TEST).json()["live"]

    assert (live["calls"], live["errors"]) == (2, 1)
    assert live["last_call_ms"] is not None


def test_echo_returns_its_content(staff_api, connected):
    response = _call(staff_api, "echo", {"text": "hi"})

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "server": "test",
        "tool": "echo",
        "content": [{"type": "text", "text": "hi"}],
        "structured_content": {"result": "hi"},
        "is_error": False,
        "duration_ms": body["duration_ms"],
    }
    assert isinstance(body["duration_ms"], int)


def test_add_returns_structured_content(staff_api, connected):
    response = _call(staff_api, "add", {"a": 2, "b": 3})

    assert response.status_code == 200
    assert response.json()["structured_content"] == {"total": 5, "operands": [2, 3]}
    assert response.json()["is_error"] is False


def test_a_failing_tool_is_an_error_result_not_an_http_error(staff_api, connected):
    response = _call(staff_api, "fail", {"message": "boom"})

    assert response.status_code == 200
    body = response.json()
    assert body["is_error"] is True
    assert body["content"] == [{"type": "text", "text": "Error executing tool fail: boom"}]
    assert body["structured_content"] is None


def test_missing_required_argument_is_an_error_result(staff_api, connected):
    response = _call(staff_api, "echo", {})

    assert response.status_code == 200
    body = response.json()
    assert body["is_error"] is True
    assert body["content"][0]["text"].startswith(
        "Error executing tool echo: 1 validation error for echoArguments\ntext\n  Field required"
    )


def test_calling_an_unknown_tool_is_404(staff_api, connected):
    response = _call(staff_api, "nope", {})

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "unknown_tool", "message": "MCP server 'test' has no tool 'nope'.", "details": None}
    }


def test_calling_a_tool_left_out_by_the_allowlist_is_404(staff_api):
    stdio_test_server(tool_allowlist=["echo"]).save()
    get_host().ready(10)

    response = _call(staff_api, "pid", {})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_tool"


def test_calling_a_tool_on_an_unknown_server_is_404(staff_api):
    response = _call(staff_api, "echo", {"text": "hi"}, server="nope")

    assert response.status_code == 404
    assert response.json() == _unknown_server("nope")


def test_calling_a_tool_on_a_disabled_server_is_503(staff_api):
    stdio_test_server(enabled=False).save()

    response = _call(staff_api, "echo", {"text": "hi"})

    assert response.status_code == 503
    assert response.json()["error"]["details"] == {"status": "disabled", "reason": None}


def test_malformed_json_body_is_400_parse_error(staff_api):
    stdio_test_server().save()

    response = staff_api.post(f"{TEST}/tools/echo/call", data='{"arguments": ', content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert error["message"].startswith("JSON parse error - ")


def test_arguments_that_are_not_an_object_are_400(staff_api):
    stdio_test_server().save()

    response = _call(staff_api, "echo", ["hi"])

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": 'arguments: Expected a dictionary of items but got type "list".',
            "details": {"arguments": ['Expected a dictionary of items but got type "list".']},
        }
    }


# --- reconnect and reload ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [f"{TEST}/reconnect", "/api/mcp/reload"])
def test_reconnect_and_reload_are_staff_only(api, url):
    stdio_test_server().save()

    response = api.post(url)

    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_reconnect_starts_a_new_server_process(staff_api, connected):
    before = _call(staff_api, "pid", {}).json()["structured_content"]

    response = staff_api.post(f"{TEST}/reconnect")

    assert response.status_code == 202
    assert response.content == b""
    wait_until(lambda: _call(staff_api, "pid", {}).json()["structured_content"] not in (None, before))


def test_reconnecting_a_disabled_server_is_503(staff_api):
    stdio_test_server(enabled=False).save()

    response = staff_api.post(f"{TEST}/reconnect")

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "code": "mcp_server_unavailable",
            "message": "MCP server 'test' is disabled",
            "details": {"status": "disabled", "reason": None},
        }
    }


def test_reconnecting_an_unknown_server_is_404(staff_api):
    response = staff_api.post("/api/mcp/servers/nope/reconnect")

    assert response.status_code == 404
    assert response.json() == _unknown_server("nope")


def _env(client, name: str) -> str:
    return _call(client, "env", {"name": name}).json()["content"][0]["text"]


def test_reload_reconnects_a_server_whose_row_changed(staff_api):
    stdio_test_server(env={"GREETING": "before"}).save()
    get_host().ready(10)
    # an update that announces nothing: only the reload can pick it up
    McpServer.objects.filter(name="test").update(env={"GREETING": "after"})
    assert _env(staff_api, "GREETING") == "before"

    response = staff_api.post("/api/mcp/reload")

    assert response.status_code == 200
    assert response.json() == {"reconnected": ["test"]}
    assert _env(staff_api, "GREETING") == "after"


def test_reload_without_changes_reconnects_nothing(staff_api, connected):
    response = staff_api.post("/api/mcp/reload")

    assert response.status_code == 200
    assert response.json() == {"reconnected": []}


def test_saving_a_row_through_the_service_reaches_the_running_host(staff_api):
    server = stdio_test_server(env={"GREETING": "before"})
    server.save()
    get_host().ready(10)

    server.env = {"GREETING": "after"}
    mcp_server_save(server=server)

    wait_until(lambda: _env(staff_api, "GREETING") == "after")


# --- resources and prompts -------------------------------------------------------------------------


def test_resources_lists_resources_and_templates(api, connected):
    response = api.get(f"{TEST}/resources")

    assert response.status_code == 200
    assert response.json() == {
        "resources": [
            {
                "name": "app_config",
                "uri": "config://app",
                "description": "The app's configuration.",
                "mimeType": "application/json",
            }
        ],
        "resource_templates": [
            {
                "name": "greeting",
                "uriTemplate": "greeting://{name}",
                "description": "A greeting for someone.",
                "mimeType": "text/plain",
            }
        ],
    }


def test_reading_a_resource_returns_its_contents(api, connected):
    response = api.get(f"{TEST}/resources/read", {"uri": "config://app"})

    assert response.status_code == 200
    assert response.json() == {
        "contents": [{"uri": "config://app", "mimeType": "application/json", "text": '{"feature": true}'}]
    }


def test_reading_a_templated_resource_fills_the_template(api, connected):
    response = api.get(f"{TEST}/resources/read", {"uri": "greeting://Ada"})

    assert response.status_code == 200
    assert response.json() == {"contents": [{"uri": "greeting://Ada", "mimeType": "text/plain", "text": "Hello, Ada!"}]}


def test_reading_without_a_uri_is_400(api, connected):
    response = api.get(f"{TEST}/resources/read")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "The uri query parameter is required.",
            "details": {"uri": ["This field is required."]},
        }
    }


def test_reading_an_unknown_resource_is_404(api, connected):
    response = api.get(f"{TEST}/resources/read", {"uri": "nothing://here"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "mcp_not_found", "message": "Unknown resource: nothing://here", "details": None}
    }


def test_resources_of_a_disabled_server_are_503(api):
    stdio_test_server(enabled=False).save()

    response = api.get(f"{TEST}/resources")

    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["code"], error["details"]["status"]) == ("mcp_server_unavailable", "disabled")


def test_prompts_lists_prompts_with_their_arguments(api, connected):
    response = api.get(f"{TEST}/prompts")

    assert response.status_code == 200
    assert response.json() == {
        "prompts": [
            {
                "name": "review",
                "description": "Ask for a review of some code.",
                "arguments": [{"name": "code", "required": True}, {"name": "language", "required": False}],
            }
        ]
    }


def test_getting_a_prompt_renders_it_with_the_arguments(api, connected):
    response = api.post(
        f"{TEST}/prompts/review/get", {"arguments": {"code": "print(1)", "language": "rust"}}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {
        "description": "Ask for a review of some code.",
        "messages": [{"role": "user", "content": {"type": "text", "text": "Please review this rust code:\nprint(1)"}}],
    }


def test_getting_an_unknown_prompt_is_404(api, connected):
    response = api.post(f"{TEST}/prompts/nope/get", {"arguments": {}}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_prompt"


def test_getting_a_prompt_without_its_required_argument_is_400(api, connected):
    response = api.post(f"{TEST}/prompts/review/get", {"arguments": {}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"arguments": ["code"]}
