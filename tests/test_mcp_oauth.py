"""OAuth 2.1 for remote MCP servers, against a real OAuth-protected server (tests/mcp/oauth_server.py: the SDK's
server-side auth over Streamable HTTP): sign-in through the platform's connect and callback endpoints, tokens
encrypted at rest, refresh, revocation and step-up leading to "needs-sign-in", client credentials."""

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import httpx2
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from mcp_servers.config import ServerSpec
from mcp_servers.host import get_host
from mcp_servers.models import McpOAuthFlow, McpOAuthToken, McpServer
from mcp_servers.oauth import connection_auth, oauth_sign_in_needed, oauth_stored_read

from .conftest import free_port, wait_until
from .factories import ChatFactory
from .fakes.providers import MODELS
from .fakes.wire import ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

OAUTH_SERVER = str(Path(__file__).parent / "mcp" / "oauth_server.py")


@contextlib.contextmanager
def oauth_test_server(access_seconds: int = 3600):
    """The OAuth-protected test server as its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, OAUTH_SERVER, str(port), str(access_seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("OAuth test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def oauth_base():
    with oauth_test_server() as base:
        yield base


def _server(base: str, **fields) -> McpServer:
    return McpServer.objects.create(
        name=fields.pop("name", "secure"),
        transport="streamable_http",
        url=f"{base}/mcp",
        auth=fields.pop("auth", "oauth"),
        timeout_seconds=10,
        **fields,
    )


def _stats(base: str) -> dict:
    return httpx.get(f"{base}/test/stats").json()


def sign_in(user, server: str = "secure") -> Client:
    """The browser's part, by hand: connect, follow the authorization server (it approves at once), callback."""
    browser = Client()
    browser.force_login(user)
    started = browser.post(f"/api/mcp/servers/{server}/oauth/connect")
    assert started.status_code == 200, started.content
    approved = httpx.get(started.json()["authorization_url"], follow_redirects=False)
    assert approved.status_code == 302, approved.text
    callback = approved.headers["location"]
    assert callback.startswith("http://testserver/api/mcp/oauth/callback?")
    back = browser.get(callback.removeprefix("http://testserver"))
    assert back.status_code == 302
    assert back.headers["location"] == f"/?mcp_oauth={server}"
    return browser


def _status(api, name: str = "secure") -> str:
    response = api.get(f"/api/mcp/servers/{name}")
    assert response.status_code == 200, response.content
    return response.json()["live"]["status"]


def _whoami(user) -> dict:
    result = get_host().call_tool("secure__whoami", {}, user=user)
    assert result.is_error is False, result.text
    return json.loads(result.text)


def _token_sha(user, server: str = "secure") -> str:
    import hashlib

    tokens, _client = oauth_stored_read(server_name=server, user_id=user.pk)
    assert tokens is not None
    return hashlib.sha256(tokens.access_token.encode()).hexdigest()[:16]


# --- signing in ------------------------------------------------------------------------------------


def test_a_user_signs_in_and_their_calls_carry_their_own_token(api, user, oauth_base):
    _server(oauth_base)
    assert _status(api) == "needs-sign-in"

    sign_in(user)

    me = _whoami(user)
    assert me["token_sha"] == _token_sha(user)
    assert me["scopes"] == ["mcp"]  # what the server's metadata advertises
    assert _stats(oauth_base)["registrations"] == 1  # dynamic client registration
    assert McpOAuthFlow.objects.count() == 0  # the flow was used once
    state = api.get("/api/mcp/servers/secure/oauth").json()
    assert state["signed_in"] is True
    assert state["scope"] == "mcp"
    assert "token" not in json.dumps(state)


def test_tokens_are_encrypted_in_the_raw_row(user, oauth_base):
    _server(oauth_base)
    sign_in(user)
    tokens, client = oauth_stored_read(server_name="secure", user_id=user.pk)
    assert tokens is not None
    assert client is not None

    with connection.cursor() as cursor:
        cursor.execute("SELECT data FROM mcp_servers_mcpoauthtoken WHERE user_id = %s", [user.pk])
        (raw,) = cursor.fetchone()

    assert tokens.access_token not in raw
    assert tokens.refresh_token not in raw
    assert client.client_id not in raw
    assert raw.startswith("gAAAAA")  # a Fernet token


def test_a_second_user_who_has_not_signed_in_is_not_offered_the_server(
    api, other_api, user, other_user, oauth_base, providers
):
    _server(oauth_base)
    sign_in(user)

    assert _status(api) == "per-user"
    assert _status(other_api) == "needs-sign-in"
    assert [t["name"] for t in api.get("/api/mcp/tools").json()] == ["secure__whoami"]
    assert other_api.get("/api/mcp/tools").json() == []
    assert other_api.get("/api/mcp/servers/secure/tools").json()["error"]["code"] == "mcp_server_needs_sign_in"

    # a turn: the server's tools are offered to alice's model, not to bob's
    providers["openai"].push(
        Turn(tool_calls=[ToolCallSpec("secure__whoami", {})]), Turn(text="You are you."), Turn(text="No tools.")
    )
    chat = ChatFactory(owner=user)
    mine = api.post(
        f"/api/chats/{chat.pk}/messages",
        {"message": "who am I?", "provider": "openai", "model": MODELS["openai"]},
        format="json",
    )
    assert mine.status_code == 200, mine.content
    (execution,) = mine.json()["tool_executions"]
    assert execution["is_error"] is False, execution["content"]
    assert json.loads(execution["content"])["token_sha"] == _token_sha(user)
    theirs = other_api.post(
        f"/api/chats/{ChatFactory(owner=other_user).pk}/messages",
        {"message": "who am I?", "provider": "openai", "model": MODELS["openai"]},
        format="json",
    )
    assert theirs.status_code == 200, theirs.content
    assert "tools" not in providers["openai"].requests_to("chat/completions")[-1].json
    named = other_api.post(
        f"/api/chats/{ChatFactory(owner=other_user).pk}/messages",
        {"message": "hi", "provider": "openai", "model": MODELS["openai"], "mcp_servers": ["secure"]},
        format="json",
    )
    assert named.status_code == 400
    assert named.json()["error"]["code"] == "mcp_server_needs_sign_in"


def test_bad_callbacks_are_refused_and_return_to_the_chat_page(user, other_user, oauth_base):
    _server(oauth_base)
    browser = Client()
    browser.force_login(user)
    url = browser.post("/api/mcp/servers/secure/oauth/connect").json()["authorization_url"]
    state = httpx.get(url).headers["location"].split("state=")[1].split("&")[0]

    intruder = Client()
    intruder.force_login(other_user)
    stolen = intruder.get(f"/api/mcp/oauth/callback?code=x&state={state}")
    unknown = browser.get("/api/mcp/oauth/callback?code=x&state=made-up")
    denied = browser.get(f"/api/mcp/oauth/callback?error=access_denied&state={state}")

    assert stolen.headers["location"].startswith("/?mcp_oauth_error=No+sign-in")
    assert unknown.headers["location"].startswith("/?mcp_oauth_error=No+sign-in")
    assert denied.headers["location"].startswith("/?mcp_oauth_error=The+authorization+server+did+not+grant")
    assert McpOAuthToken.objects.filter(signed_in_at__isnull=False).count() == 0


def test_a_sign_in_whose_stored_state_cannot_be_read_any_more_is_started_again(user, oauth_base):
    from cryptography.fernet import Fernet

    _server(oauth_base)
    browser = Client()
    browser.force_login(user)
    url = browser.post("/api/mcp/servers/secure/oauth/connect").json()["authorization_url"]
    callback = httpx.get(url).headers["location"].removeprefix("http://testserver")
    # MCP_CREDENTIALS_KEYS changed while the user was at the authorization server
    McpOAuthFlow.objects.update(data=Fernet(Fernet.generate_key()).encrypt(b"{}").decode())

    back = browser.get(callback)

    assert back.status_code == 302
    assert back.headers["location"].startswith("/?mcp_oauth_error=This+sign-in+can+no+longer+be+completed")
    assert McpOAuthToken.objects.filter(signed_in_at__isnull=False).count() == 0
    assert McpOAuthFlow.objects.count() == 0  # used up: a second try with the same state is unknown
    assert browser.post("/api/mcp/servers/secure/oauth/connect").status_code == 200


def test_the_servers_own_headers_go_to_the_server_only_not_to_the_oauth_endpoints(user, oauth_base):
    _server(oauth_base, headers={"X-Static": "admin-set-secret"})

    sign_in(user)

    seen = _stats(oauth_base)["static_header"]
    assert seen["mcp"] >= 1  # the probe, and the connection after the sign-in
    assert seen["elsewhere"] == 0  # metadata, registration, token


@pytest.mark.parametrize(
    ("server", "url", "allowed"),
    [
        ("https://8.8.8.8/mcp", "https://1.1.1.1/token", True),
        ("https://8.8.8.8/mcp", "http://1.1.1.1/token", False),  # not https
        ("https://8.8.8.8/mcp", "https://10.0.0.7/token", False),  # a public server cannot name a private address
        ("https://8.8.8.8/mcp", "https://127.0.0.1:9000/token", False),
        ("https://8.8.8.8/mcp", "https://169.254.169.254/latest", False),  # link-local (cloud metadata)
        ("https://8.8.8.8/mcp", "https://[::1]/token", False),
        ("https://8.8.8.8/mcp", "https://localhost/token", False),
        ("http://8.8.8.8/mcp", "http://8.8.8.8/.well-known/oauth-protected-resource", True),  # its own origin
        ("http://127.0.0.1:8000/mcp", "http://127.0.0.1:9000/token", True),  # beside the platform
        ("http://127.0.0.1:8000/mcp", "http://10.0.0.7/token", False),  # http off the loopback
        ("https://10.0.0.5/mcp", "https://10.0.0.7/token", True),  # the admin put the server in that network
    ],
)
def test_oauth_requests_go_only_where_the_server_may_send_them(server, url, allowed):
    from mcp_servers.oauth import OAuthUrlGuard
    from platform_site.exceptions import UpstreamError

    async def check() -> None:
        await OAuthUrlGuard(server).check(url)

    if allowed:
        asyncio.run(check())
    else:
        with pytest.raises(UpstreamError) as refused:
            asyncio.run(check())
        assert refused.value.code == "mcp_oauth_unsafe_url"


def test_connect_errors_are_json(api, oauth_base):
    McpServer.objects.create(name="plain", transport="streamable_http", url=f"{oauth_base}/mcp")

    assert api.post("/api/mcp/servers/plain/oauth/connect").json()["error"]["code"] == "not_oauth"
    assert api.post("/api/mcp/servers/nope/oauth/connect").status_code == 404


# --- the token's life ---------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_through_the_sdk_provider(user):
    with oauth_test_server(access_seconds=1) as base:
        _server(base)
        sign_in(user)
        first = _token_sha(user)
        # the SDK counts a token as expired a little before its end: this one at once
        wait_until(lambda: McpOAuthToken.objects.get().expires_at.timestamp() < time.time())

        me = _whoami(user)

        assert _stats(base)["refreshes"] >= 1
        assert me["token_sha"] == _token_sha(user) != first  # the new token, stored
        assert McpOAuthToken.objects.get().signed_in_at is not None


def test_a_token_the_server_stops_taking_early_is_refreshed_not_signed_out(user, oauth_base):
    _server(oauth_base)
    sign_in(user)
    first = _whoami(user)["token_sha"]

    httpx.post(f"{oauth_base}/test/expire-access")  # refused before its expiry; the refresh token still works
    me = _whoami(user)

    assert _stats(oauth_base)["refreshes"] == 1
    assert me["token_sha"] == _token_sha(user) != first
    assert McpOAuthToken.objects.get().signed_in_at is not None


def test_workers_refreshing_one_users_token_at_once_do_not_sign_them_out(user, oauth_base):
    """Two workers' connections hold the same expired token, and the authorization server rotates refresh
    tokens (each works once): one refreshes, the other takes the tokens it stored."""
    server = _server(oauth_base)
    sign_in(user)
    McpOAuthToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    spec = replace(ServerSpec.from_row(server), oauth_user_id=user.pk)
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }

    async def worker() -> tuple[int, str]:
        auth = connection_auth(spec)
        async with httpx2.AsyncClient(auth=auth, timeout=20) as http:
            response = await http.post(
                f"{oauth_base}/mcp", json=initialize, headers={"Accept": "application/json, text/event-stream"}
            )
            return response.status_code, response.request.headers.get("Authorization", "")

    async def both() -> list[tuple[int, str]]:
        return list(await asyncio.gather(worker(), worker()))

    results = asyncio.run(both())

    assert [status for status, _ in results] == [200, 200]
    assert _stats(oauth_base)["refreshes"] == 1
    row = McpOAuthToken.objects.get()
    assert row.signed_in_at is not None
    assert row.expires_at > timezone.now()
    assert {bearer for _, bearer in results} == {
        f"Bearer {oauth_stored_read(server_name='secure', user_id=user.pk)[0].access_token}"
    }


def test_a_refusal_of_an_old_token_leaves_a_newer_sign_in_standing(user, oauth_base):
    _server(oauth_base)
    sign_in(user)

    kept = oauth_sign_in_needed(server_name="secure", user_id=user.pk, refused_token="an-older-token")

    assert kept is False
    assert McpOAuthToken.objects.get().signed_in_at is not None
    current = oauth_stored_read(server_name="secure", user_id=user.pk)[0]
    assert current is not None
    assert oauth_sign_in_needed(server_name="secure", user_id=user.pk, refused_token=current.access_token) is True
    assert McpOAuthToken.objects.get().signed_in_at is None


def test_a_revoked_token_makes_the_server_need_sign_in_again(api, user, oauth_base):
    _server(oauth_base)
    sign_in(user)
    _whoami(user)

    httpx.post(f"{oauth_base}/test/revoke")
    result = get_host().call_tool("secure__whoami", {}, user=user)

    assert result.is_error is True
    assert "sign in" in result.text
    row = McpOAuthToken.objects.get()
    assert row.signed_in_at is None
    assert oauth_stored_read(server_name="secure", user_id=user.pk)[0] is None
    assert _status(api) == "needs-sign-in"
    assert api.get("/api/mcp/tools").json() == []
    # no reconnect loop: the connection waits for a new sign-in, and the next use closes it
    registrations = _stats(oauth_base)["registrations"]
    again = get_host().call_tool("secure__whoami", {}, user=user)
    assert again.is_error is True
    assert ("secure", user.pk) not in get_host().user_connections

    sign_in(user)  # signing in again reuses the client registered before

    assert _whoami(user)["token_sha"] == _token_sha(user)
    assert _stats(oauth_base)["registrations"] == registrations
    assert _status(api) == "per-user"


def test_a_server_asking_for_more_scope_leads_to_a_sign_in_with_it(api, user, oauth_base):
    _server(oauth_base)
    sign_in(user)
    assert _whoami(user)["scopes"] == ["mcp"]

    httpx.post(f"{oauth_base}/test/require-scope?scope=admin")
    result = get_host().call_tool("secure__whoami", {}, user=user)

    assert result.is_error is True
    state = api.get("/api/mcp/servers/secure/oauth").json()
    assert state["signed_in"] is False
    assert sorted(state["needs_scope"].split()) == ["admin", "mcp"]
    assert _status(api) == "needs-sign-in"

    browser = sign_in(user)

    assert sorted(_whoami(user)["scopes"]) == ["admin", "mcp"]
    assert browser.get("/api/mcp/servers/secure/oauth").json()["needs_scope"] == ""


def test_signing_out_forgets_the_tokens(api, user, oauth_base):
    _server(oauth_base)
    sign_in(user)

    assert api.delete("/api/mcp/servers/secure/oauth").status_code == 204

    assert McpOAuthToken.objects.count() == 0
    assert _status(api) == "needs-sign-in"


# --- no user: client credentials ----------------------------------------------------------------------


def test_client_credentials_for_a_server_used_without_a_user(oauth_base):
    _server(oauth_base, auth="client_credentials", oauth_client_id="machine", oauth_client_secret="machine-secret")
    get_host().ready(10)

    result = get_host().call_tool("secure__whoami", {})

    assert result.is_error is False, result.text
    me = json.loads(result.text)
    assert me["subject"] == "machine"
    assert me["client_id"] == "machine"
    assert _stats(oauth_base)["client_credentials"] == 1


def test_wrong_client_credentials_leave_the_server_in_error(oauth_base):
    _server(oauth_base, auth="client_credentials", oauth_client_id="machine", oauth_client_secret="wrong")
    host = get_host()
    host.ready(10)

    (status,) = [s for s in host.statuses() if s.name == "secure"]

    assert status.status == "error"
    assert "wrong" not in (status.last_error or "")


# --- how the client authenticates, CIMD, refused upgrades ---------------------------------------------


def test_the_token_endpoint_auth_method_follows_what_the_authorization_server_supports():
    from mcp.shared.auth import OAuthMetadata

    from mcp_servers.oauth import registration_auth_method, token_endpoint_auth_method

    def metadata(methods):
        return OAuthMetadata(
            issuer="https://as.example.com",
            authorization_endpoint="https://as.example.com/authorize",
            token_endpoint="https://as.example.com/token",
            token_endpoint_auth_methods_supported=methods,
        )

    assert token_endpoint_auth_method(metadata(["client_secret_post"]), has_secret=True) == "client_secret_post"
    assert token_endpoint_auth_method(metadata(["client_secret_basic"]), has_secret=True) == "client_secret_basic"
    assert token_endpoint_auth_method(metadata(None), has_secret=True) == "client_secret_basic"  # RFC 8414's default
    assert token_endpoint_auth_method(metadata(["client_secret_post"]), has_secret=False) == "none"
    assert registration_auth_method(metadata(["none", "client_secret_post"])) == "none"
    assert registration_auth_method(metadata(["client_secret_post"])) == "client_secret_post"
    assert registration_auth_method(None) == "none"


def test_the_client_id_metadata_document_is_served_at_the_configured_url(settings):
    anonymous = Client()
    assert anonymous.get("/api/mcp/oauth/client-metadata.json").json()["error"]["code"] == "cimd_not_configured"

    settings.MCP_OAUTH_CLIENT_METADATA_URL = "https://platform.example.com/api/mcp/oauth/client-metadata.json"
    settings.MCP_OAUTH_REDIRECT_URI = "https://platform.example.com/api/mcp/oauth/callback"
    response = anonymous.get("/api/mcp/oauth/client-metadata.json")

    assert response.status_code == 200
    document = response.json()
    assert document["client_id"] == "https://platform.example.com/api/mcp/oauth/client-metadata.json"
    assert document["redirect_uris"] == ["https://platform.example.com/api/mcp/oauth/callback"]
    assert document["token_endpoint_auth_method"] == "none"
    assert document["grant_types"] == ["authorization_code", "refresh_token"]


def test_a_server_refusing_the_scope_it_asks_for_is_not_offered_endless_sign_ins(api, user, oauth_base):
    from mcp_servers.oauth import MAX_REFUSED_UPGRADES

    _server(oauth_base)
    for _ in range(MAX_REFUSED_UPGRADES):
        browser = sign_in(user)
        # the server answers 403 insufficient_scope for "mcp", which the token it refused already held
        oauth_sign_in_needed(server_name="secure", user_id=user.pk, scope="mcp", step_up=True)

    refused = browser.post("/api/mcp/servers/secure/oauth/connect")

    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "mcp_oauth_scope_refused"
    # asking for more scope than was refused is a real step-up: the count starts over
    oauth_sign_in_needed(server_name="secure", user_id=user.pk, scope="mcp admin", step_up=True)
    assert browser.post("/api/mcp/servers/secure/oauth/connect").status_code == 200
