"""An OAuth-protected MCP test server over Streamable HTTP, built on the SDK's server-side auth.

    python oauth_server.py PORT [ACCESS_TOKEN_SECONDS]

One process is both the resource server (``/mcp``, bearer tokens required, scope ``mcp``) and its
authorization server (the SDK's ``/authorize``, ``/token``, ``/register``, ``/revoke`` and metadata
routes over an in-memory provider). ``/authorize`` approves at once: the browser is sent straight back
to the client's redirect URI with a code. On top of what the SDK offers:

- ``grant_type=client_credentials`` at ``/token`` for the client ``machine`` / ``machine-secret``;
- ``GET /test/stats``: counts of registrations, codes exchanged, refreshes, client-credentials grants, and
  of requests carrying the header ``X-Static`` at ``/mcp`` and elsewhere;
- ``POST /test/revoke``: every token issued so far stops working (access and refresh);
- ``POST /test/expire-access``: every access token issued so far stops working; refresh tokens still do;
- ``POST /test/require-scope?scope=admin``: ``/mcp`` answers 403 ``insufficient_scope`` (step-up) to a
  token without that scope.
"""

import base64
import hashlib
import json
import secrets
import sys
import time
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

PORT = int(sys.argv[1])
ACCESS_SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3600
BASE = f"http://127.0.0.1:{PORT}"
MACHINE_ID, MACHINE_SECRET = "machine", "machine-secret"


class Provider:
    """In-memory clients, codes and tokens; every access token says whose it is (its subject)."""

    def __init__(self) -> None:
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.stats = {"registrations": 0, "codes": 0, "refreshes": 0, "client_credentials": 0, "subjects": 0}
        # requests carrying the header X-Static (a server's own header set in admin): at /mcp, and elsewhere
        self.static_header = {"mcp": 0, "elsewhere": 0}

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.clients[client_info.client_id] = client_info
        self.stats["registrations"] += 1

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(32)
        self.stats["subjects"] += 1
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or ["mcp"],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=f"person-{self.stats['subjects']}",
        )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client: OAuthClientInformationFull, code: str) -> AuthorizationCode | None:
        found = self.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def issue(self, client_id: str, scopes: list[str], subject: str | None, *, refresh: bool = True) -> OAuthToken:
        access = f"at-{secrets.token_urlsafe(24)}"
        self.access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + ACCESS_SECONDS,
            subject=subject,
        )
        refresh_token = None
        if refresh:
            refresh_token = f"rt-{secrets.token_urlsafe(24)}"
            self.refresh[refresh_token] = RefreshToken(
                token=refresh_token, client_id=client_id, scopes=scopes, subject=subject
            )
        return OAuthToken(
            access_token=access, expires_in=ACCESS_SECONDS, scope=" ".join(scopes), refresh_token=refresh_token
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, code: AuthorizationCode
    ) -> OAuthToken:
        self.codes.pop(code.code, None)
        self.stats["codes"] += 1
        return self.issue(client.client_id, code.scopes, code.subject)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        found = self.refresh.get(refresh_token)
        return found if found is not None and found.client_id == client.client_id else None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self.refresh.pop(refresh_token.token, None)
        self.stats["refreshes"] += 1
        return self.issue(client.client_id, scopes or refresh_token.scopes, refresh_token.subject)

    async def load_access_token(self, token: str) -> AccessToken | None:
        return self.access.get(token)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)


provider = Provider()
server = MCPServer(
    "oauth-test-server",
    auth_server_provider=provider,  # type: ignore[arg-type]  # no SEP-990 identity assertions here
    auth=AuthSettings(
        issuer_url=BASE,  # type: ignore[arg-type]
        resource_server_url=f"{BASE}/mcp",  # type: ignore[arg-type]
        validate_token_resource=False,
        required_scopes=["mcp"],
        client_registration_options=ClientRegistrationOptions(
            enabled=True, valid_scopes=["mcp", "admin"], default_scopes=["mcp"]
        ),
        revocation_options=RevocationOptions(enabled=True),
    ),
)
required_extra_scope: list[str] = []


@server.tool(description="Who the caller is to this server: the subject and client of their token.")
def whoami() -> str:
    token = get_access_token()
    assert token is not None
    return json.dumps(
        {
            "subject": token.subject,
            "client_id": token.client_id,
            "scopes": token.scopes,
            "token_sha": hashlib.sha256(token.token.encode()).hexdigest()[:16],
        },
        sort_keys=True,
    )


async def _json(send: Any, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _client_credentials(form: dict[str, list[str]], headers: dict[bytes, bytes]) -> tuple[str, str]:
    basic = headers.get(b"authorization", b"").decode()
    if basic.lower().startswith("basic "):
        client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        return client_id, secret
    return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]


def wrap(app: Any) -> Any:
    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        headers = dict(scope["headers"])
        if b"x-static" in headers:
            provider.static_header["mcp" if path == "/mcp" else "elsewhere"] += 1
        if path == "/test/stats":
            return await _json(send, 200, provider.stats | {"static_header": provider.static_header})
        if path == "/test/revoke" and method == "POST":
            provider.access.clear()
            provider.refresh.clear()
            return await _json(send, 200, {"revoked": True})
        if path == "/test/expire-access" and method == "POST":
            provider.access.clear()
            return await _json(send, 200, {"expired": True})
        if path == "/test/require-scope" and method == "POST":
            required_extra_scope[:] = parse_qs(scope["query_string"].decode()).get("scope", [])
            return await _json(send, 200, {"required": required_extra_scope})
        if path == "/mcp" and required_extra_scope:
            bearer = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            token = provider.access.get(bearer)
            if token is not None and not set(required_extra_scope) <= set(token.scopes):
                wanted = " ".join(sorted({*token.scopes, *required_extra_scope}))
                challenge = (
                    f'Bearer error="insufficient_scope", scope="{wanted}", '
                    f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
                )
                return await _json(
                    send, 403, {"error": "insufficient_scope"}, ((b"www-authenticate", challenge.encode()),)
                )
        if path == "/token" and method == "POST":
            body = await _body(receive)
            form = parse_qs(body.decode())
            if form.get("grant_type", [""])[0] == "client_credentials":
                if _client_credentials(form, headers) != (MACHINE_ID, MACHINE_SECRET):
                    return await _json(send, 401, {"error": "invalid_client"})
                provider.stats["client_credentials"] += 1
                scopes = form.get("scope", ["mcp"])[0].split()
                issued = provider.issue(MACHINE_ID, scopes, "machine", refresh=False)
                return await _json(send, 200, issued.model_dump(exclude_none=True))
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await app(scope, replay, send)
        return await app(scope, receive, send)

    return outer


if __name__ == "__main__":
    application = wrap(server.streamable_http_app())
    uvicorn.run(application, host="127.0.0.1", port=PORT, log_level="warning")
