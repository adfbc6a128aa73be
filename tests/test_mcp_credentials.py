"""Per-user MCP variables (``user_vars``): each user's own values, encrypted at rest, set over REST, put into
that user's own connection (real server processes), and a server without them "needs setup" for that user.

The host reads rows and values from its own thread, so these tests commit (transaction=True).
"""

import io
import json
import logging
import shutil
import sys

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection

from chats.models import ToolExecution
from mcp_servers.config import ServerSpec, UserContext
from mcp_servers.credentials import (
    credential_set,
    credential_values,
    decrypt_values,
    derived_key,
)
from mcp_servers.host import get_host
from mcp_servers.models import McpServer, McpUserCredential
from mcp_servers.redaction import redactor_for
from mcp_servers.selectors import mcp_servers_needing_setup

from .conftest import TEST_MCP_SERVER, platform_process, stdio_test_server, wait_until
from .factories import ChatFactory, UserFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

ALICE_TOKEN = "alice-token-8d1f"
BOB_TOKEN = "bob-token-27c4"
VARS = {
    "API_TOKEN": {"title": "API token", "description": "From your account page.", "secret": True},
    "NICK": {"title": "Nickname", "required": False},
}
NOT_AVAILABLE = "Tool 'vault__env' is not available. Use one of the tools offered."


@pytest.fixture
def vault():
    """The test server as "vault", declaring a secret required token and an optional nickname."""
    server = stdio_test_server("vault", timeout_seconds=10, user_vars=VARS, env={"GREETING": "hello {{NICK}}"})
    server.save()
    return server


def _url(name: str = "vault") -> str:
    return f"/api/mcp/servers/{name}/credentials"


def _env(user, name: str, server: str = "vault") -> tuple[bool, str]:
    result = get_host().call_tool(f"{server}__env", {"name": name}, user=user)
    return result.is_error, result.text


def _turn(client, chat, **body):
    return client.post(
        f"/api/chats/{chat.pk}/messages",
        {"message": "Go", "provider": "openai", "model": MODELS["openai"], **body},
        format="json",
    )


def _offered(providers, index: int = 0) -> list[str]:
    request = providers["openai"].requests_to("/chat/completions")[index].json
    return sorted(tool["function"]["name"] for tool in request.get("tools", []))


# --- the credentials endpoint ----------------------------------------------------------------------


def test_get_describes_the_variables_and_what_the_caller_has_not_set(api, vault):
    response = api.get(_url())

    assert response.status_code == 200, response.content
    assert response.json() == {
        "server": "vault",
        "vars": [
            {
                "name": "API_TOKEN",
                "title": "API token",
                "description": "From your account page.",
                "secret": True,
                "required": True,
                "set": False,
            },
            {"name": "NICK", "title": "Nickname", "description": "", "secret": False, "required": False, "set": False},
        ],
        "missing": ["API_TOKEN"],
    }


def test_put_stores_the_values_and_no_answer_ever_holds_one(api, user, other_user, vault):
    put = api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN, "NICK": "ann"}}, format="json")
    got = api.get(_url())
    listing = api.get("/api/mcp/servers")

    assert put.status_code == 200, put.content
    assert put.json() == {"server": "vault", "set": ["API_TOKEN", "NICK"], "missing": []}
    assert [(var["name"], var["set"]) for var in got.json()["vars"]] == [("API_TOKEN", True), ("NICK", True)]
    assert got.json()["missing"] == []
    for response in (put, got, listing):
        assert ALICE_TOKEN not in response.content.decode()
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN, "NICK": "ann"}
    assert credential_values(server_name="vault", user_id=other_user.pk) == {}


def test_put_replaces_every_value_and_a_blank_one_unsets_it(api, user, vault):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN, "NICK": "ann"}}, format="json")

    only_nick = api.put(_url(), {"values": {"NICK": "annie", "API_TOKEN": ""}}, format="json")

    assert only_nick.json() == {"server": "vault", "set": ["NICK"], "missing": ["API_TOKEN"]}
    assert credential_values(server_name="vault", user_id=user.pk) == {"NICK": "annie"}


def test_delete_clears_the_callers_values_only(api, other_api, user, other_user, vault):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN}}, format="json")
    other_api.put(_url(), {"values": {"API_TOKEN": BOB_TOKEN}}, format="json")

    deleted = api.delete(_url())
    again = api.delete(_url())

    assert (deleted.status_code, again.status_code) == (204, 204)
    assert list(McpUserCredential.objects.values_list("user", flat=True)) == [other_user.pk]
    assert api.get(_url()).json()["missing"] == ["API_TOKEN"]


@pytest.mark.parametrize(
    ("values", "code", "details"),
    [
        ({"GITHUB_TOKEN": "x", "API_TOKEN": "y"}, "unknown_user_var", {"unknown": ["GITHUB_TOKEN"]}),
        ({"API_TOKEN": "${DATABASE_URL}"}, "invalid_user_var_value", None),
        ({"API_TOKEN": 1234}, "invalid", None),
        ({"API_TOKEN": "x" * 4097}, "invalid", None),
        ({"API_TOKEN": "a\x00b"}, "invalid", None),
    ],
)
def test_put_refuses_bad_values_with_a_clear_error_and_stores_nothing(api, vault, values, code, details):
    response = api.put(_url(), {"values": values}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if details is not None:
        assert error["details"]["unknown"] == details["unknown"]
    assert McpUserCredential.objects.count() == 0


def test_put_without_values_is_a_400(api, vault):
    response = api.put(_url(), {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"values": ["This field is required."]}


def test_a_server_without_user_vars_has_nothing_to_set(api):
    stdio_test_server("plain").save()

    answers = [api.get(_url("plain")), api.put(_url("plain"), {"values": {}}, format="json"), api.delete(_url("plain"))]

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(400, "no_user_vars")] * 3


def test_a_server_the_caller_may_not_use_is_not_found(api, user, other_user, vault):
    vault.access_restricted = True
    vault.save()
    vault.allowed_users.set([other_user])

    answers = [
        api.get(_url()),
        api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN}}, format="json"),
        api.delete(_url()),
        api.get(_url("nonexistent")),
    ]

    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(404, "unknown_mcp_server")] * 4
    assert McpUserCredential.objects.count() == 0


def test_the_chat_page_session_sets_values_with_its_csrf_token(user, vault):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    page = browser.get("/")
    token = page.content.decode().split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    body = json.dumps({"values": {"API_TOKEN": ALICE_TOKEN}})

    without = browser.put(_url(), body, content_type="application/json")
    with_token = browser.put(_url(), body, content_type="application/json", headers={"X-CSRFToken": token})

    assert 'id="server-setup"' in page.content.decode()
    assert without.status_code == 403
    assert with_token.status_code == 200, with_token.content
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}


# --- encryption at rest ----------------------------------------------------------------------------


def _raw_values() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute('SELECT "values" FROM mcp_servers_mcpusercredential')
        return [row[0] for row in cursor.fetchall()]


def test_the_database_holds_no_plaintext_value(api, vault):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN, "NICK": "ann"}}, format="json")

    [stored] = _raw_values()

    assert ALICE_TOKEN not in stored
    assert "API_TOKEN" not in stored  # not even the names
    assert "NICK" not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token (version byte 0x80), read only with the key
    assert decrypt_values(stored) == {"API_TOKEN": ALICE_TOKEN, "NICK": "ann"}


def test_without_keys_of_its_own_the_key_comes_from_the_secret_key(user, vault, settings):
    settings.MCP_CREDENTIALS_KEYS = []
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN})
    [stored] = _raw_values()

    assert json.loads(Fernet(derived_key(settings.SECRET_KEY)).decrypt(stored.encode())) == {"API_TOKEN": ALICE_TOKEN}
    settings.SECRET_KEY = "another-secret-key-of-another-install"
    assert credential_values(server_name="vault", user_id=user.pk) == {}  # unreadable: as if never set
    assert mcp_servers_needing_setup(user=user) == {"vault"}


def test_rotation_re_encrypts_every_row_with_the_first_key(user, other_user, vault, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MCP_CREDENTIALS_KEYS = [old]
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN})
    credential_set(server=vault, user=other_user, values={"API_TOKEN": BOB_TOKEN})
    before = sorted(_raw_values())

    # a new key goes first; the old one still decrypts
    settings.MCP_CREDENTIALS_KEYS = [new, old]
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}
    out = io.StringIO()
    call_command("rotate_mcp_credentials", stdout=out)

    # after the rotation only the new key is needed, and the old one reads nothing
    after = sorted(_raw_values())
    settings.MCP_CREDENTIALS_KEYS = [new]
    assert out.getvalue().strip().splitlines() == [
        "Re-encrypted 2 credential row(s) with the first key.",
        "Re-encrypted 0 OAuth token and sign-in row(s) with the first key.",
    ]
    assert set(after).isdisjoint(before)
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}
    assert credential_values(server_name="vault", user_id=other_user.pk) == {"API_TOKEN": BOB_TOKEN}
    settings.MCP_CREDENTIALS_KEYS = [old]
    assert credential_values(server_name="vault", user_id=user.pk) == {}


def test_rotation_re_encrypts_oauth_tokens_and_sign_ins_under_way_too(user, settings):
    from mcp.shared.auth import OAuthToken

    from mcp_servers.credentials import credentials_fernet
    from mcp_servers.models import McpOAuthFlow, McpOAuthToken
    from mcp_servers.oauth import oauth_stored_read

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MCP_CREDENTIALS_KEYS = [old]
    server = McpServer.objects.create(
        name="remote", transport="streamable_http", url="http://127.0.0.1:9/mcp", auth="oauth"
    )
    tokens = {"access_token": "access-5e1b", "token_type": "Bearer", "refresh_token": "refresh-77aa"}
    seal = credentials_fernet().encrypt
    McpOAuthToken.objects.create(
        server=server,
        user=user,
        data=seal(json.dumps({"tokens": tokens}).encode()).decode(),
        signed_in_at="2026-01-01T00:00Z",
    )
    flow = McpOAuthFlow.objects.create(
        state="s-1", server=server, user=user, data=seal(json.dumps({"code_verifier": "v" * 43}).encode()).decode()
    )
    out = io.StringIO()

    settings.MCP_CREDENTIALS_KEYS = [new, old]
    call_command("rotate_mcp_credentials", stdout=out)

    settings.MCP_CREDENTIALS_KEYS = [new]  # the old key is gone: the rows still read
    assert "Re-encrypted 2 OAuth token and sign-in row(s) with the first key." in out.getvalue()
    assert oauth_stored_read(server_name="remote", user_id=user.pk)[0] == OAuthToken.model_validate(tokens)
    flow.refresh_from_db()
    assert json.loads(credentials_fernet().decrypt(flow.data.encode())) == {"code_verifier": "v" * 43}


def test_rotation_reports_oauth_rows_no_key_can_read(user, settings):
    from mcp_servers.models import McpOAuthToken

    server = McpServer.objects.create(
        name="remote", transport="streamable_http", url="http://127.0.0.1:9/mcp", auth="oauth"
    )
    row = McpOAuthToken.objects.create(
        server=server, user=user, data=Fernet(Fernet.generate_key()).encrypt(b"{}").decode()
    )
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match=rf"1 OAuth row\(s\) could not be decrypted .*\(token {row.pk}\)"):
        call_command("rotate_mcp_credentials", stdout=io.StringIO())


def test_moving_from_the_derived_key_to_a_key_of_ones_own_is_a_rotation(user, vault, settings):
    settings.MCP_CREDENTIALS_KEYS = []
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN})
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}

    call_command("rotate_mcp_credentials", stdout=io.StringIO())

    settings.SECRET_KEY = "another-secret-key-of-another-install"
    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}


def test_rotation_reports_rows_no_key_can_read(user, vault, settings):
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN})
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    row = McpUserCredential.objects.get()

    with pytest.raises(
        CommandError, match=rf"1 row\(s\) could not be decrypted with any configured key \(ids {row.pk}\)"
    ):
        call_command("rotate_mcp_credentials", stdout=io.StringIO())

    assert _raw_values() == [row.values]  # left as it was


def test_a_key_that_is_not_a_fernet_key_fails_the_checks_and_no_key_warns_at_deploy(settings):
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode(), "not-a-key"]
    errors = [m for m in run_checks() if m.id == "platform_site.E001"]
    settings.MCP_CREDENTIALS_KEYS = []
    warnings = [m.id for m in run_checks(include_deployment_checks=True) if m.id == "platform_site.W004"]
    settings.MCP_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    clean = [m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("platform_site.W004")]

    assert [m.msg.split(" (", 1)[0] for m in errors] == ["MCP_CREDENTIALS_KEYS: key 2 is not a Fernet key"]
    assert "not-a-key" not in errors[0].msg
    assert warnings == ["platform_site.W004"]
    assert clean == []


# --- connections -----------------------------------------------------------------------------------


def test_each_users_value_reaches_their_own_server_process_only(user, other_user, vault):
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN, "NICK": "ann"})
    credential_set(server=vault, user=other_user, values={"API_TOKEN": BOB_TOKEN})

    assert _env(user, "API_TOKEN") == (False, ALICE_TOKEN)
    assert _env(other_user, "API_TOKEN") == (False, BOB_TOKEN)
    # "{{NICK}}" filled in the configured env; an optional value not set is empty
    assert _env(user, "GREETING") == (False, "hello ann")
    assert _env(other_user, "GREETING") == (False, "hello ")
    assert _env(other_user, "NICK") == (False, "<unset>")
    assert sorted(get_host().user_connections) == [("vault", user.pk), ("vault", other_user.pk)]


def test_a_name_the_configured_env_sets_itself_is_not_overridden(user):
    server = stdio_test_server("vault", user_vars=VARS, env={"API_TOKEN": "configured", "TOKEN_COPY": "{{API_TOKEN}}"})
    server.save()
    credential_set(server=server, user=user, values={"API_TOKEN": ALICE_TOKEN})

    assert _env(user, "API_TOKEN") == (False, "configured")
    assert _env(user, "TOKEN_COPY") == (False, ALICE_TOKEN)


def test_a_placeholder_in_args_is_filled_in(user):
    server = McpServer.objects.create(
        name="vault",
        transport="stdio",
        command=sys.executable,
        args=[TEST_MCP_SERVER, "stdio", "--nick={{NICK}}"],
        user_vars={"NICK": {}},
    )
    credential_set(server=server, user=user, values={"NICK": "ann"})

    pid = get_host().call_tool("vault__pid", {}, user=user).text

    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert cmdline.read().split(b"\0")[1:4] == [TEST_MCP_SERVER.encode(), b"stdio", b"--nick=ann"]


def test_changed_values_reach_the_next_call_in_a_new_process(api, user, vault):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN}}, format="json")
    first_pid = get_host().call_tool("vault__pid", {}, user=user).text

    api.put(_url(), {"values": {"API_TOKEN": "alice-new-token-55"}}, format="json")

    assert _env(user, "API_TOKEN") == (False, "alice-new-token-55")
    assert get_host().call_tool("vault__pid", {}, user=user).text != first_pid


def test_values_changed_in_another_worker_are_used_on_next_use(user, vault):
    # A row written behind this host's back (another worker's save): the values are compared on each use.
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN})
    assert _env(user, "API_TOKEN") == (False, ALICE_TOKEN)
    from mcp_servers.credentials import encrypt_values

    McpUserCredential.objects.filter(user=user).update(values=encrypt_values({"API_TOKEN": "from-elsewhere-1"}))

    assert _env(user, "API_TOKEN") == (False, "from-elsewhere-1")


def test_cleared_values_close_the_users_connection_and_calls_fail(api, user, vault):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN}}, format="json")
    assert _env(user, "API_TOKEN") == (False, ALICE_TOKEN)

    api.delete(_url())

    wait_until(lambda: ("vault", user.pk) not in get_host().user_connections)
    result = get_host().call_tool("vault__env", {"name": "API_TOKEN"}, user=user)
    assert (result.is_error, result.text) == (True, "MCP server 'vault' cannot run for this user")


def test_a_users_secret_is_redacted_from_the_servers_stderr(user, caplog):
    caplog.set_level(logging.INFO)
    server = stdio_test_server("vault", user_vars=VARS, env={"TEST_SERVER_PRINT_TOKEN": "1"})
    server.save()
    credential_set(server=server, user=user, values={"API_TOKEN": ALICE_TOKEN})

    assert _env(user, "API_TOKEN") == (False, ALICE_TOKEN)  # the server did get it
    wait_until(lambda: "starting with API_TOKEN" in caplog.text)

    assert "MCP server vault stderr: starting with API_TOKEN=***" in caplog.text
    assert ALICE_TOKEN not in caplog.text


def test_a_secret_in_the_url_path_is_redacted():
    spec = ServerSpec(
        name="remote",
        transport="streamable_http",
        url="https://mcp.example.com/{{API_TOKEN}}/mcp",
        user_vars=("API_TOKEN", "NICK"),
        required_vars=("API_TOKEN",),
        secret_vars=("API_TOKEN",),
    ).with_fingerprint()

    filled = spec.for_user(UserContext(id=1, username="ann", vars=(("API_TOKEN", "s3cr3t/tok"), ("NICK", "annie"))))

    assert filled.url == "https://mcp.example.com/s3cr3t%2Ftok/mcp"
    assert spec.per_user is True
    assert redactor_for(filled)("GET failed: s3cr3t/tok by annie") == "GET failed: *** by annie"
    assert "s3cr3t" not in repr(UserContext(id=1, username="ann", vars=(("API_TOKEN", "s3cr3t/tok"),)))


# --- needs setup -------------------------------------------------------------------------------------


def test_the_api_shows_needs_setup_to_a_user_without_values_only(api, other_api, other_user, vault):
    credential_set(server=vault, user=other_user, values={"API_TOKEN": BOB_TOKEN})

    mine = api.get("/api/mcp/servers").json()
    theirs = other_api.get("/api/mcp/servers").json()
    detail = api.get("/api/mcp/servers/vault").json()
    summary = api.get("/api/mcp/status").json()
    tools = api.get("/api/mcp/servers/vault/tools")
    all_tools = api.get("/api/mcp/tools").json()

    assert [(s["name"], s["live"]["status"], s["user_vars"]) for s in mine] == [
        ("vault", "needs-setup", ["API_TOKEN", "NICK"])
    ]
    assert [(s["name"], s["live"]["status"]) for s in theirs] == [("vault", "per-user")]
    assert detail["live"]["status"] == "needs-setup"
    assert (summary["servers"]["needs-setup"], summary["servers"]["per-user"]) == (1, 0)
    assert tools.status_code == 400
    assert tools.json()["error"]["code"] == "mcp_server_needs_setup"
    assert tools.json()["error"]["details"] == {"missing": {"vault": ["API_TOKEN"]}}
    assert all_tools == []
    assert get_host().user_connections == {}  # nothing was started for the user who has not set it up


def test_a_server_needing_setup_is_not_offered_to_the_users_model(api, user, providers):
    server = stdio_test_server("vault", user_vars=VARS)
    server.save()
    stdio_test_server("open").save()
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("vault__env", {"name": "API_TOKEN"})]), Turn(text="No."))

    body = _turn(api, ChatFactory(owner=user)).json()

    assert {name.split("__")[0] for name in _offered(providers)} == {"open"}
    assert [(e["name"], e["is_error"], e["content"]) for e in body["tool_executions"]] == [
        ("vault__env", True, NOT_AVAILABLE)
    ]
    assert ("vault", user.pk) not in get_host().user_connections


def test_asking_for_a_server_needing_setup_by_name_is_a_400_naming_what_to_set(api, user, vault, providers):
    response = _turn(api, ChatFactory(owner=user), mcp_servers=["vault"])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "mcp_server_needs_setup"
    assert error["details"] == {"missing": {"vault": ["API_TOKEN"]}}
    assert providers["openai"].requests_to("/chat/completions") == []


def test_once_set_up_the_users_turn_gets_the_tools_and_their_value(api, user, vault, providers):
    api.put(_url(), {"values": {"API_TOKEN": ALICE_TOKEN}}, format="json")
    providers["openai"].push(Turn(tool_calls=[ToolCallSpec("vault__env", {"name": "API_TOKEN"})]), Turn(text="Done."))

    body = _turn(api, ChatFactory(owner=user), mcp_servers=["vault"]).json()

    assert "vault__env" in _offered(providers)
    assert [(e["name"], e["is_error"], e["content"]) for e in body["tool_executions"]] == [
        ("vault__env", False, ALICE_TOKEN)
    ]
    assert ToolExecution.objects.get().is_error is False


def test_needs_setup_costs_no_query_while_no_server_declares_a_required_variable(user):
    stdio_test_server("plain").save()
    stdio_test_server("optional", user_vars={"NICK": {"required": False}}).save()
    assert mcp_servers_needing_setup(user=user) == frozenset()

    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        again = mcp_servers_needing_setup(user=user)

    assert again == frozenset()
    assert queries.captured_queries == []


# --- admin ----------------------------------------------------------------------------------------------


def test_admin_lists_who_set_which_names_never_a_value_and_can_delete(client, user, other_user, vault):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    credential_set(server=vault, user=user, values={"API_TOKEN": ALICE_TOKEN, "NICK": "ann"})
    credential_set(server=vault, user=other_user, values={"API_TOKEN": BOB_TOKEN})
    row = McpUserCredential.objects.get(user=user)

    listing = client.get("/admin/mcp_servers/mcpusercredential/").content.decode()
    detail = client.get(f"/admin/mcp_servers/mcpusercredential/{row.pk}/change/").content.decode()
    add = client.get("/admin/mcp_servers/mcpusercredential/add/")
    deleted = client.post(f"/admin/mcp_servers/mcpusercredential/{row.pk}/delete/", {"post": "yes"})

    assert "API_TOKEN, NICK" in listing
    for page in (listing, detail):
        assert ALICE_TOKEN not in page
        assert BOB_TOKEN not in page
        assert row.values not in page
    assert "API_TOKEN, NICK" in detail
    assert add.status_code == 403
    assert deleted.status_code == 302
    assert list(McpUserCredential.objects.values_list("user", flat=True)) == [other_user.pk]


# --- the chat page ----------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_chat_page_sets_up_a_server_that_needs_it(user, vault, providers, settings):
    from playwright.sync_api import expect, sync_playwright

    from .test_browser import ARTIFACTS, CHROMIUM_ARGS

    # The server process checks passwords with the real (PBKDF2) hasher, not the tests' fast one.
    user.password = PBKDF2PasswordHasher().encode("browser-pass-123", "browsertestsalt")
    user.save(update_fields=["password"])
    key = Fernet.generate_key().decode()
    settings.MCP_CREDENTIALS_KEYS = [key]  # the server process's key, to read what it stored

    with platform_process(MCP_CREDENTIALS_KEYS=key) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            page.goto(f"{base_url}/login/?next=/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser-pass-123")
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base_url}/")

            # the server is named in the setup strip, not offered in the tool picker
            strip = page.locator("#server-setup")
            expect(strip, "\n".join(problems)).to_contain_text("vault needs your setup", timeout=15_000)
            expect(page.locator("#servers input[value=vault]")).to_have_count(0)

            # its form: the secret is a password field, nothing prefilled; saving sets it up
            strip.get_by_role("button", name="Set up").click()
            token = strip.locator("input[name=API_TOKEN]")
            expect(token).to_have_attribute("type", "password")
            expect(token).to_have_value("")
            expect(strip.locator("input[name=NICK]")).to_have_attribute("type", "text")
            token.fill(ALICE_TOKEN)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "server-setup.png"))
            strip.get_by_role("button", name="Save").click()

            expect(page.locator("#status")).to_have_text("vault is set up.", timeout=15_000)
            expect(strip).to_be_hidden()
            expect(page.locator("#servers input[value=vault]")).to_be_checked()
            assert problems == []
        finally:
            browser.close()

    assert credential_values(server_name="vault", user_id=user.pk) == {"API_TOKEN": ALICE_TOKEN}
