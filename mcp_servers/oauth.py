"""OAuth 2.1 for remote MCP servers: each user's tokens, the browser sign-in, and the auth of connections.

A server with ``auth = oauth`` is per-user. A user signs in in their browser:

- ``oauth_flow_start`` discovers the server's protected-resource metadata (checked to be about this server)
  and its authorization server's metadata (a 2025-03-26 server without any gets the default endpoints at
  its root), chooses the scope (admin's; else the server's challenge, its ``scopes_supported``, or none),
  takes the client (one registered beforehand in admin, the platform's client ID metadata document URL
  where the server supports CIMD, the one this user registered before, or a new dynamic registration),
  with the token-endpoint auth method the server supports, makes a PKCE pair and a state, keeps them
  (encrypted) in an ``McpOAuthFlow`` row for a few minutes, and returns the authorization URL the browser
  is sent to;
- ``oauth_flow_finish``, at the platform's callback, takes the row back by its state (for the same user,
  once), exchanges the code for tokens and stores them encrypted in the user's ``McpOAuthToken``.

Both steps use the SDK's own helpers (``mcp.client.auth.utils``, ``OAuthContext``). A connection then gets
the SDK's ``OAuthClientProvider`` over a database-backed ``TokenStorage``: it adds the bearer token and
refreshes it when it expires. When the server answers 401 (a revoked token, a refresh that failed) or 403
``insufficient_scope`` (step-up), the provider would send a person to the authorization server: our
redirect handler instead clears the user's tokens, keeps the scope asked for, and ends the connection; the
user sees the server as "needs-sign-in" until they connect again. No reconnect loop: nothing retries
without a new sign-in, and a server refusing, again and again, tokens that hold the very scope it asks for
is not offered more sign-ins for a while (MAX_REFUSED_UPGRADES).

``auth = client_credentials`` servers are shared: the SDK's ``ClientCredentialsOAuthProvider`` gets a
token with the client ID and secret set in admin (sent the way the authorization server supports), kept in
memory for the connection's life; with a PEM private key for a secret, ``PrivateKeyJWTOAuthProvider`` signs
a client assertion instead (RFC 7523).
"""

import contextlib
import ipaddress
import json
import logging
import secrets
import time
import warnings
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import anyio
import httpx2
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from mcp.client.auth import OAuthClientProvider, OAuthFlowError, PKCEParameters
from mcp.client.auth.exceptions import OAuthRegistrationError
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.auth.oauth2 import OAuthContext, check_registration_usable
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_client_info_from_metadata_url,
    create_client_registration_request,
    create_oauth_metadata_request,
    credentials_match_issuer,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    get_client_metadata_scopes,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    handle_registration_response,
    handle_token_response_scopes,
    should_use_client_metadata_url,
    union_scopes,
    validate_authorization_response_iss,
    validate_metadata_issuer,
)
from mcp.shared._httpx_utils import MCP_DEFAULT_TIMEOUT
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import calculate_token_expiry, check_resource_allowed, resource_url_from_server_url
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import AnyUrl
from pydantic import ValidationError as PydanticValidationError

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import UpstreamError, ValidationFailed

from .config import ConfigError, ServerSpec, expanded_client_secret, expanded_headers, expanded_url
from .credentials import credentials_fernet, user_connection_close_here
from .models import AuthMode, McpOAuthFlow, McpOAuthToken, McpServer

logger = logging.getLogger(__name__)

FLOW_TTL = timedelta(minutes=10)
CLIENT_NAME = "LLM Platform"
UNUSED_REDIRECT_URI = "https://localhost/mcp-oauth-not-used"


# How many times in a row a server may refuse a token that holds the very scope it asks for before the
# platform stops offering a new sign-in (a scope upgrade that can never succeed must not loop).
MAX_REFUSED_UPGRADES = 3
REFUSED_UPGRADES_WINDOW = timedelta(hours=1)
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# One worker refreshes a user's token at a time: the others wait this long for it, then go ahead anyway.
REFRESH_LOCK_SECONDS = 30
REFRESH_LOCK_WAIT_SECONDS = 10


class SignInRequired(Exception):
    """The server wants the user to sign in (again): their token was refused, or more scope is needed."""


def token_endpoint_auth_method(asm: OAuthMetadata | None, *, has_secret: bool) -> str:
    """How a client authenticates at the token endpoint, from what the authorization server supports.

    Without a secret: ``none``. With one: ``client_secret_basic`` unless the server lists only
    ``client_secret_post`` (RFC 8414 §2: an absent list means ``client_secret_basic``).
    """
    if not has_secret:
        return "none"
    supported = (asm.token_endpoint_auth_methods_supported if asm else None) or ["client_secret_basic"]
    return next((method for method in SECRET_AUTH_METHODS if method in supported), "client_secret_basic")


def registration_auth_method(asm: OAuthMetadata | None) -> str:
    """The token-endpoint auth method to ask for in a dynamic registration: ``none`` (a public client with
    PKCE) when the server allows it, else the secret-based method it supports (it then issues a secret)."""
    supported = asm.token_endpoint_auth_methods_supported if asm else None
    if not supported or "none" in supported:
        return "none"
    return token_endpoint_auth_method(asm, has_secret=True)


def client_metadata_url() -> str | None:
    """The URL of the platform's client ID metadata document (CIMD), when one is configured."""
    return settings.MCP_OAUTH_CLIENT_METADATA_URL or None


def client_metadata_document(*, redirect_uri: str) -> dict[str, Any]:
    """The client ID metadata document served at MCP_OAUTH_CLIENT_METADATA_URL: its ``client_id`` is that URL."""
    return {
        "client_id": settings.MCP_OAUTH_CLIENT_METADATA_URL,
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }


# --- encrypted rows ----------------------------------------------------------------------------------


def _seal(data: dict[str, Any]) -> str:
    return credentials_fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def _open(text: str) -> dict[str, Any]:
    try:
        data = json.loads(credentials_fernet().decrypt(text.encode()))
    except InvalidToken:
        logger.error("An MCP OAuth row cannot be decrypted with MCP_CREDENTIALS_KEYS: treated as signed out")
        return {}
    return data if isinstance(data, dict) else {}


def _expires_at(tokens: OAuthToken) -> datetime | None:
    expiry = calculate_token_expiry(tokens.expires_in)
    return datetime.fromtimestamp(expiry, UTC) if expiry is not None else None


def oauth_grants_for(*, user_id: int, server_names: list[str]) -> dict[str, str]:
    """When ``user_id`` signed in to each of these servers, by name; servers they must sign in to are absent."""
    rows = McpOAuthToken.objects.filter(
        user_id=user_id, server__name__in=server_names, signed_in_at__isnull=False
    ).values_list("server__name", "signed_in_at")
    return {name: signed_in_at.isoformat() for name, signed_in_at in rows if signed_in_at is not None}


def oauth_servers() -> frozenset[str]:
    return frozenset(McpServer.objects.filter(auth=AuthMode.OAUTH).values_list("name", flat=True))


def oauth_sign_in_missing(*, user_id: int, server_names: frozenset[str] | list[str]) -> frozenset[str]:
    """Of these OAuth servers, those ``user_id`` has not signed in to (or must sign in to again)."""
    if not server_names:
        return frozenset()
    return frozenset(server_names) - set(oauth_grants_for(user_id=user_id, server_names=list(server_names)))


def _stored(server_name: str, user_id: int) -> tuple[McpOAuthToken | None, dict[str, Any]]:
    row = McpOAuthToken.objects.filter(server__name=server_name, user_id=user_id).first()
    return row, (_open(row.data) if row is not None else {})


def oauth_stored_read(*, server_name: str, user_id: int) -> tuple[OAuthToken | None, OAuthClientInformationFull | None]:
    """The user's tokens (None when they must sign in) and client registration, decrypted; for connections."""
    row, data = _stored(server_name, user_id)
    if row is None:
        return None, None
    tokens = OAuthToken.model_validate(data["tokens"]) if row.signed_in_at and data.get("tokens") else None
    client = OAuthClientInformationFull.model_validate(data["client_info"]) if data.get("client_info") else None
    return tokens, client


def oauth_token_expiry(*, server_name: str, user_id: int) -> float | None:
    row = McpOAuthToken.objects.filter(server__name=server_name, user_id=user_id).only("expires_at").first()
    return row.expires_at.timestamp() if row is not None and row.expires_at is not None else None


@transaction.atomic
def oauth_tokens_store(*, server_name: str, user_id: int, tokens: OAuthToken) -> None:
    """New tokens from a refresh: the sign-in stands, so a running connection is not replaced."""
    row = McpOAuthToken.objects.select_for_update().filter(server__name=server_name, user_id=user_id).first()
    if row is None or row.signed_in_at is None:
        return  # signed out meanwhile (admin, the user): the refreshed tokens are not kept
    data = _open(row.data)
    row.data = _seal({**data, "tokens": tokens.model_dump(mode="json", exclude_none=True)})
    row.expires_at = _expires_at(tokens)
    row.scope = tokens.scope or ""
    row.save(update_fields=["data", "expires_at", "scope", "updated_at"])


@transaction.atomic
def oauth_client_info_store(*, server_name: str, user_id: int, client_info: OAuthClientInformationFull) -> None:
    row = McpOAuthToken.objects.select_for_update().filter(server__name=server_name, user_id=user_id).first()
    if row is None:
        return
    data = _open(row.data)
    row.data = _seal({**data, "client_info": client_info.model_dump(mode="json", exclude_none=True)})
    row.save(update_fields=["data", "updated_at"])


@transaction.atomic
def oauth_sign_in_needed(
    *, server_name: str, user_id: int, scope: str = "", step_up: bool = False, refused_token: str | None = None
) -> bool:
    """Forget the user's tokens (their client registration stays); keep the scope the server asked for.

    ``refused_token`` is the access token the refusing connection held: when the stored one is another (a
    worker refreshed it meanwhile, or the user signed in again), the refusal is of an old token and the
    sign-in stands; False then, True when the tokens were forgotten.

    A step-up (403 ``insufficient_scope``) asking only for scope the refused token already held is a
    refused upgrade: another sign-in would get the same. After MAX_REFUSED_UPGRADES of them in a row,
    ``oauth_flow_start`` stops offering one for REFUSED_UPGRADES_WINDOW (or until the user signs out).
    """
    row = McpOAuthToken.objects.select_for_update().filter(server__name=server_name, user_id=user_id).first()
    if row is None:
        return False
    data = _open(row.data)
    stored_token = (data.get("tokens") or {}).get("access_token")
    if refused_token is not None and row.signed_in_at is not None and stored_token not in (None, refused_token):
        return False
    tokens = data.pop("tokens", None) or {}
    granted = set(str(tokens.get("scope") or row.scope or "").split())
    asked = set(scope.split())
    if step_up and asked and asked <= granted:
        data["refused_upgrades"] = _recent_refusals(data) + 1
        data["refused_at"] = timezone.now().isoformat()
    else:
        data.pop("refused_upgrades", None)
        data.pop("refused_at", None)
    row.data = _seal(data)
    row.signed_in_at = None
    row.expires_at = None
    row.needs_scope = scope
    row.save(update_fields=["data", "signed_in_at", "expires_at", "needs_scope", "updated_at"])
    return True


def _recent_refusals(data: dict[str, Any]) -> int:
    """Refused upgrades in a row, the last within REFUSED_UPGRADES_WINDOW (after that, a sign-in is offered again)."""
    at = data.get("refused_at")
    if not at or datetime.fromisoformat(at) < timezone.now() - REFUSED_UPGRADES_WINDOW:
        return 0
    return int(data.get("refused_upgrades", 0))


@transaction.atomic
def oauth_sign_out(*, server: McpServer, user: User) -> None:
    """Forget ``user``'s tokens and registration for ``server`` (the server is then "needs-sign-in")."""
    McpOAuthToken.objects.filter(server=server, user=user).delete()
    McpOAuthFlow.objects.filter(server=server, user=user).delete()
    transaction.on_commit(partial(user_connection_close_here, server.name, user.pk))


def oauth_state_for(*, server: McpServer, user: User) -> dict[str, Any]:
    """What the user may know of their sign-in: whether it stands, the scope granted and the one asked for."""
    row = McpOAuthToken.objects.filter(server=server, user=user).first()
    return {
        "server": server.name,
        "signed_in": bool(row and row.signed_in_at),
        "signed_in_at": row.signed_in_at if row else None,
        "scope": row.scope if row else "",
        "needs_scope": row.needs_scope if row else "",
    }


# --- connections ---------------------------------------------------------------------------------------


class DbTokenStorage:
    """The SDK's TokenStorage over one user's McpOAuthToken row (the host's event loop reaches the ORM via run_db)."""

    def __init__(self, server_name: str, user_id: int) -> None:
        self.server_name = server_name
        self.user_id = user_id

    async def get_tokens(self) -> OAuthToken | None:
        tokens, _client = await run_db(oauth_stored_read, server_name=self.server_name, user_id=self.user_id)
        return tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await run_db(oauth_tokens_store, server_name=self.server_name, user_id=self.user_id, tokens=tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        _tokens, client = await run_db(oauth_stored_read, server_name=self.server_name, user_id=self.user_id)
        return client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await run_db(
            oauth_client_info_store, server_name=self.server_name, user_id=self.user_id, client_info=client_info
        )

    async def expiry(self) -> float | None:
        return await run_db(oauth_token_expiry, server_name=self.server_name, user_id=self.user_id)

    async def latest(self) -> tuple[OAuthToken | None, float | None]:
        """The stored tokens and their expiry, as another worker may have just left them."""
        return await run_db(_stored_tokens_and_expiry, server_name=self.server_name, user_id=self.user_id)

    async def refresh_lock_take(self) -> str | None:
        """Wait (bounded) until no other worker refreshes this user's token, and hold that; the holder's mark.

        Without Redis (one process) the cache is the process's own, which is all there is to share with.
        """
        key, mine = self._lock_key(), secrets.token_hex(8)
        deadline = time.monotonic() + REFRESH_LOCK_WAIT_SECONDS
        while True:
            if await run_db(_cache_add, key, mine, REFRESH_LOCK_SECONDS):
                return mine
            if time.monotonic() > deadline:
                return None  # the holder is stuck or gone: refresh without it
            await anyio.sleep(0.05)

    async def refresh_lock_release(self, mine: str) -> None:
        await run_db(_cache_delete_if, self._lock_key(), mine)

    def _lock_key(self) -> str:
        return f"mcp-oauth-refresh:{self.server_name}:{self.user_id}"


def _stored_tokens_and_expiry(*, server_name: str, user_id: int) -> tuple[OAuthToken | None, float | None]:
    tokens, _client = oauth_stored_read(server_name=server_name, user_id=user_id)
    return tokens, oauth_token_expiry(server_name=server_name, user_id=user_id)


def _cache_add(key: str, value: str, seconds: int) -> bool:
    try:
        return bool(cache.add(key, value, seconds))
    except Exception:  # Redis away: refreshing without the lock beats not refreshing
        logger.warning("The OAuth refresh lock is unavailable (cache error): refreshing without it")
        return True


def _cache_delete_if(key: str, value: str) -> None:
    with contextlib.suppress(Exception):
        if cache.get(key) == value:
            cache.delete(key)


class _UserOAuthProvider(OAuthClientProvider):
    """The SDK's provider for one user's connection, made safe where several workers share the user's tokens.

    - **Expiry.** The SDK keeps a token's expiry only in memory (from ``expires_in`` when it got the token); it
      is told the stored one, so a token loaded from storage is refreshed when due, not sent until refused.
    - **One refresh at a time.** Each worker process has its own connection, and an authorization server that
      rotates refresh tokens (OAuth 2.1 for public clients) accepts each only once: a second worker refreshing
      with the same one would fail and sign the user out. So a refresh takes a shared lock, then re-reads the
      stored tokens: when another worker has refreshed meanwhile, its tokens answer this refresh (no request),
      and an expired stored token is refreshed with the newest refresh token.
    - **A refused token is refreshed before anything else.** A 401 to a token held as valid (its expiry
      unknown, or cut short by the server) is first answered with a refresh and a retry, once; only a refused
      refresh or retry leads to a new sign-in.
    - **Whose refusal.** The connection records the access token the server refused, so that an old
      connection's refusal does not sign out tokens a newer refresh or sign-in stored (``oauth_sign_in_needed``).
    """

    refused_with: int | None = None  # the status of the server's last refusal of a request (401, 403)
    refused_token: str | None = None  # the access token this connection held when it was refused
    _refresh_request: httpx2.Request | None = None
    _answer: tuple[OAuthToken, float | None] | None = None  # another worker's tokens, to answer the refresh with
    _refresh_lock: str | None = None

    @cached_property
    def url_guard(self) -> "OAuthUrlGuard":
        return OAuthUrlGuard(self.context.server_url)

    async def _initialize(self) -> None:
        await super()._initialize()
        storage = self.context.storage
        if isinstance(storage, DbTokenStorage):
            self.context.token_expiry_time = await storage.expiry()

    async def _refresh_token(self) -> httpx2.Request:
        storage, held = self.context.storage, self.context.current_tokens
        if isinstance(storage, DbTokenStorage):
            self._refresh_lock = await storage.refresh_lock_take()
            stored, expiry = await storage.latest()
            if stored is not None and held is not None and stored.access_token != held.access_token:
                if expiry is None or time.time() < expiry:
                    self._answer = (stored, expiry)
                else:
                    self.context.current_tokens = stored  # its refresh token is the newest one
        self._refresh_request = await super()._refresh_token()
        return self._refresh_request

    async def _handle_refresh_response(self, response: httpx2.Response) -> bool:
        try:
            if self._answer is not None:
                self.context.current_tokens, self.context.token_expiry_time = self._answer
                return True
            return await super()._handle_refresh_response(response)
        finally:
            self._answer, self._refresh_request = None, None
            storage, mine = self.context.storage, self._refresh_lock
            self._refresh_lock = None
            if isinstance(storage, DbTokenStorage) and mine is not None:
                await storage.refresh_lock_release(mine)

    async def _auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        # The SDK's flow, watched and steered: a refresh another worker did is answered without a request;
        # a 401 to a token held as valid is retried once after a refresh; and the refusal of the MCP request
        # itself (401, or 403 for step-up) is recorded for the redirect handler, which is told only a URL.
        held = self.context.current_tokens.access_token if self._initialized and self.context.current_tokens else None
        flow = super()._auth_flow(request)
        outgoing = await anext(flow)
        retried = False
        while True:
            if outgoing is self._refresh_request and self._answer is not None:
                response = httpx2.Response(200, request=outgoing)  # never sent: answered from storage
            else:
                if outgoing is not request:  # discovery, registration, refresh: where the metadata says
                    await self.url_guard.check(outgoing.url)
                response = yield outgoing
            if response.request is request and response.status_code in (401, 403):
                sent = request.headers.get("Authorization", "").removeprefix("Bearer ") or None
                if response.status_code == 401 and sent and not retried and self.context.can_refresh_token():
                    retried = True
                    await flow.aclose()
                    self.context.token_expiry_time = time.time() - 1  # due now: the SDK refreshes first
                    del request.headers["Authorization"]
                    flow = super()._auth_flow(request)
                    outgoing = await anext(flow)
                    continue
                self.refused_with = response.status_code
                self.refused_token = sent or held
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return


class _MemoryTokenStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


PEM_PRIVATE_KEY = "PRIVATE KEY-----"


def _signing_algorithm(pem: str) -> str:
    """The JWS algorithm for a PEM private key: ES256/384/512 for EC keys, RS256 for RSA, EdDSA for Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"oauth_client_secret holds a private key that cannot be read: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithms = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name in algorithms:
            return algorithms[key.curve.name]
    elif isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigError("oauth_client_secret holds a private key of a kind that cannot sign client assertions")


class _ClientCredentialsProvider(ClientCredentialsOAuthProvider):
    """The SDK's client-credentials provider, authenticating at the token endpoint the way the authorization
    server supports (``client_secret_basic`` or ``client_secret_post``), which is known only after discovery."""

    async def _exchange_token_client_credentials(self) -> httpx2.Request:
        info = self.context.client_info
        if info is not None:
            info.token_endpoint_auth_method = token_endpoint_auth_method(
                self.context.oauth_metadata, has_secret=bool(info.client_secret)
            )
        return await super()._exchange_token_client_credentials()


def connection_auth(
    spec: ServerSpec, *, on_sign_in_required: Callable[[str], None] | None = None
) -> httpx2.Auth | None:
    """The httpx auth for a connection to ``spec``: None without OAuth; ConfigError when it cannot be built."""
    if spec.auth == AuthMode.CLIENT_CREDENTIALS:
        secret = expanded_client_secret(spec)
        with warnings.catch_warnings():
            # Without an issuer the SDK warns (deprecated): the admin chose to trust the discovered one.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            if PEM_PRIVATE_KEY in secret:
                # A private key instead of a secret: the client authenticates with a signed JWT (RFC 7523).
                signer = SignedJWTParameters(
                    issuer=spec.oauth_client_id,
                    subject=spec.oauth_client_id,
                    signing_key=secret,
                    signing_algorithm=_signing_algorithm(secret),
                )
                return PrivateKeyJWTOAuthProvider(
                    server_url=expanded_url(spec),
                    storage=_MemoryTokenStorage(),
                    client_id=spec.oauth_client_id,
                    assertion_provider=signer.create_assertion_provider(),
                    scope=spec.oauth_scopes or None,
                    issuer=spec.oauth_issuer or None,
                )
            return _ClientCredentialsProvider(
                server_url=expanded_url(spec),
                storage=_MemoryTokenStorage(),
                client_id=spec.oauth_client_id,
                client_secret=secret,
                scope=spec.oauth_scopes or None,
                issuer=spec.oauth_issuer or None,
            )
    if spec.auth != AuthMode.OAUTH:
        return None
    if spec.oauth_user_id is None:
        raise ConfigError("an OAuth server runs per user")
    server_name, user_id = spec.name, spec.oauth_user_id

    async def sign_in_again(authorization_url: str) -> None:
        # The SDK would send a person to the authorization server now; nobody is here to go.
        scope = parse_qs(urlsplit(authorization_url).query).get("scope", [""])[0]
        step_up = provider.refused_with == 403
        await run_db(
            oauth_sign_in_needed,
            server_name=server_name,
            user_id=user_id,
            scope=scope,
            step_up=step_up,
            refused_token=provider.refused_token,
        )
        if on_sign_in_required is not None:
            on_sign_in_required(scope)
        raise SignInRequired(f"MCP server {server_name!r} needs the user to sign in again")

    async def no_callback() -> AuthorizationCodeResult:
        raise SignInRequired(f"MCP server {server_name!r} needs the user to sign in again")

    metadata = OAuthClientMetadata(
        # The SDK wants a redirect URI before it calls the redirect handler, which stops there: never visited.
        redirect_uris=[AnyUrl(UNUSED_REDIRECT_URI)],
        client_name=CLIENT_NAME,
        scope=spec.oauth_scopes or None,
        application_type="web",
    )
    provider = _UserOAuthProvider(
        server_url=expanded_url(spec),
        client_metadata=metadata,
        storage=DbTokenStorage(server_name, user_id),
        redirect_handler=sign_in_again,
        callback_handler=no_callback,
        client_metadata_url=client_metadata_url(),
    )
    return provider


# --- where OAuth requests may go -----------------------------------------------------------------------


class OAuthUrlGuard:
    """Where the OAuth requests for one MCP server may go: the URLs come from the server's metadata, which
    the server (or whoever answers at its address) writes, and any signed-in user can set them off.

    - https, or http on the MCP server's own origin or the loopback (a server the admin runs beside the
      platform);
    - no private, loopback, link-local or reserved address, unless the MCP server itself is on one (the admin
      put it in that network): a public server's metadata cannot send the platform into its own network.

    The check is at request time, from a fresh name resolution; a name that resolves differently a moment
    later (DNS rebinding) is not caught.
    """

    def __init__(self, server_url: str) -> None:
        self.server = httpx2.URL(server_url)
        self._server_private: bool | None = None

    async def __call__(self, request: httpx2.Request) -> None:
        await self.check(request.url)

    async def check(self, url: httpx2.URL | str) -> None:
        url = httpx2.URL(str(url))
        same_origin = (url.scheme, url.host, url.port) == (self.server.scheme, self.server.host, self.server.port)
        if url.scheme != "https" and not (
            url.scheme == "http" and (same_origin or await _resolves_only_to(url.host, "loopback"))
        ):
            raise UpstreamError(
                f"The MCP server's OAuth metadata names {_origin(url)}, which is not https.",
                code="mcp_oauth_unsafe_url",
            )
        if same_origin:
            return
        if self._server_private is None:
            self._server_private = await _resolves_only_to(self.server.host, "private")
        if not self._server_private and not await _resolves_only_to(url.host, "public"):
            raise UpstreamError(
                f"The MCP server's OAuth metadata names {_origin(url)}, a private network address.",
                code="mcp_oauth_unsafe_url",
            )


def _origin(url: httpx2.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode()}"


async def _resolves_only_to(host: str, kind: str) -> bool:
    """Whether every address ``host`` resolves to is of ``kind``: loopback, private (any non-public) or public."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            found = await anyio.getaddrinfo(host, None)
        except OSError:
            return False
        addresses = {ipaddress.ip_address(str(entry[4][0]).split("%")[0]) for entry in found}
    if not addresses:
        return False
    if kind == "loopback":
        return all(address.is_loopback for address in addresses)
    public = [address.is_global and not address.is_multicast for address in addresses]
    return all(public) if kind == "public" else not any(public)


def oauth_http_client(server_url: str) -> httpx2.AsyncClient:
    """An HTTP client for the sign-in's requests, each checked by the server's OAuthUrlGuard."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT), event_hooks={"request": [OAuthUrlGuard(server_url)]}
    )


# --- the browser sign-in -------------------------------------------------------------------------------


async def _discover(
    http: httpx2.AsyncClient, server_url: str, headers: dict[str, str]
) -> tuple[ProtectedResourceMetadata | None, OAuthMetadata | None, str | None, str | None]:
    """(protected-resource metadata, authorization-server metadata, AS URL, challenged scope), as the SDK finds them.

    The server's own headers (set in admin) go to the server only, never to the URLs its metadata names.
    """
    challenge_url, challenge_scope = None, None
    try:
        # An unauthenticated request: a protected server's 401 may name its metadata and the scope it wants.
        probe = await http.post(
            server_url,
            json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
            headers={**headers, "Accept": "application/json, text/event-stream"},
        )
        if probe.status_code in (401, 403):
            challenge_url = extract_resource_metadata_from_www_auth(probe)
            challenge_scope = extract_scope_from_www_auth(probe)
    except httpx2.HTTPError as exc:
        raise UpstreamError(f"The MCP server cannot be reached: {exc}", code="mcp_oauth_unreachable") from exc
    prm: ProtectedResourceMetadata | None = None
    for url in build_protected_resource_metadata_discovery_urls(challenge_url, server_url):
        prm = await handle_protected_resource_response(await http.send(create_oauth_metadata_request(url)))
        if prm is not None:
            break
    if prm is not None and prm.resource:
        # RFC 8707 / RFC 9728 §3.3: the metadata must be about this server, or its tokens would be for another.
        expected = resource_url_from_server_url(server_url)
        if not check_resource_allowed(requested_resource=expected, configured_resource=str(prm.resource)):
            raise OAuthFlowError(f"Protected resource {prm.resource} does not match this server ({expected})")
    auth_server_url = str(prm.authorization_servers[0]) if prm and prm.authorization_servers else None
    asm: OAuthMetadata | None = None
    for url in build_oauth_authorization_server_metadata_discovery_urls(auth_server_url, server_url):
        ok, found = await handle_auth_metadata_response(await http.send(create_oauth_metadata_request(url)))
        if not ok:
            break
        if found is not None:
            if auth_server_url is not None:
                validate_metadata_issuer(found, auth_server_url)
            asm = found
            break
    return prm, asm, auth_server_url, challenge_scope


def _previous(*, server: McpServer, user: User) -> tuple[OAuthClientInformationFull | None, str, str, int]:
    row, stored = _stored(server.name, user.pk)
    client = OAuthClientInformationFull.model_validate(stored["client_info"]) if stored.get("client_info") else None
    refused = _recent_refusals(stored)
    return client, (row.needs_scope if row else ""), (row.scope if row else ""), refused


async def oauth_flow_start(*, server: McpServer, user: User, redirect_uri: str) -> str:
    """Begin ``user``'s sign-in to ``server``: the URL of the authorization server to send their browser to.

    ValidationFailed ``not_oauth`` for a server without per-user OAuth; UpstreamError when the server or its
    authorization server cannot be reached or does not speak OAuth as MCP asks.
    """
    if server.auth != AuthMode.OAUTH:
        raise ValidationFailed(f"MCP server {server.name!r} does not use OAuth sign-in.", code="not_oauth")
    spec = ServerSpec.from_row(server)
    try:
        server_url, headers = expanded_url(spec), expanded_headers(spec)
        client_secret = expanded_client_secret(spec)
    except ConfigError as exc:
        raise ValidationFailed(f"MCP server {server.name!r} is misconfigured: {exc}", code="mcp_config") from exc
    previous_client, needs_scope, granted, refused = await run_db(_previous, server=server, user=user)
    if refused >= MAX_REFUSED_UPGRADES:
        raise UpstreamError(
            f"MCP server {server.name!r} refused {refused} sign-ins in a row that granted the scope it asked for; "
            "signing in again would not help now. Try again in an hour, or sign out of the server to start over.",
            code="mcp_oauth_scope_refused",
        )
    metadata = OAuthClientMetadata(
        redirect_uris=[AnyUrl(redirect_uri)], client_name=CLIENT_NAME, application_type="web"
    )
    cimd_url = client_metadata_url()
    try:
        async with oauth_http_client(server_url) as http:
            try:
                prm, asm, auth_server_url, challenged = await _discover(http, server_url, headers)
            except OAuthFlowError as exc:
                raise UpstreamError(f"OAuth discovery failed: {exc}", code="mcp_oauth_discovery") from exc
            issuer = auth_server_url or (str(asm.issuer) if asm else None)
            # Scope: the admin's, else the server's challenge, its scopes_supported, or none at all.
            scope = spec.oauth_scopes or get_client_metadata_scopes(challenged, prm, asm, metadata.grant_types)
            # Step-up: what the server asked for more, with what was granted before (SEP-2350).
            scope = union_scopes(union_scopes(scope, granted or None), needs_scope or None)
            metadata.scope = scope
            metadata.token_endpoint_auth_method = registration_auth_method(asm)  # type: ignore[assignment]
            client: OAuthClientInformationFull | None
            if spec.oauth_client_id:
                # Pre-registered in admin: the secret goes the way the authorization server takes it.
                client = OAuthClientInformationFull(
                    client_id=spec.oauth_client_id,
                    client_secret=client_secret or None,
                    redirect_uris=[AnyUrl(redirect_uri)],
                    token_endpoint_auth_method=token_endpoint_auth_method(asm, has_secret=bool(client_secret)),
                )
            elif should_use_client_metadata_url(asm, cimd_url):
                # The server fetches our client ID metadata document: no registration (SEP-991).
                client = create_client_info_from_metadata_url(cimd_url or "", redirect_uris=[AnyUrl(redirect_uri)])
                client.issuer = issuer
            elif (
                previous_client is not None
                and (issuer is None or credentials_match_issuer(previous_client, issuer, None))
                and redirect_uri in [str(uri) for uri in previous_client.redirect_uris or []]
                # A registration limited to fewer scopes than asked for now (step-up) is made again.
                and (not previous_client.scope or set((scope or "").split()) <= set(previous_client.scope.split()))
            ):
                client = previous_client
            else:
                parts = urlsplit(server_url)
                request = create_client_registration_request(asm, metadata, f"{parts.scheme}://{parts.netloc}")
                try:
                    client = await handle_registration_response(await http.send(request))
                    if client.token_endpoint_auth_method is None:
                        # The server did not say: its secret (if it issued one) goes the way it supports.
                        client.token_endpoint_auth_method = token_endpoint_auth_method(
                            asm, has_secret=bool(client.client_secret)
                        )
                    check_registration_usable(client)
                except OAuthRegistrationError as exc:
                    raise UpstreamError(f"Client registration failed: {exc}", code="mcp_oauth_registration") from exc
                client.issuer = issuer
    except (httpx2.HTTPError, OAuthFlowError, PydanticValidationError) as exc:
        # The authorization server is away, or answers what OAuth does not: a 502, never a 500.
        raise UpstreamError(
            f"Signing in to MCP server {server.name!r} failed: its authorization server could not be used.",
            code="mcp_oauth_discovery",
        ) from exc
    context = OAuthContext(
        server_url=server_url,
        client_metadata=metadata,
        storage=_MemoryTokenStorage(),
        redirect_handler=None,
        callback_handler=None,
        protected_resource_metadata=prm,
        oauth_metadata=asm,
        auth_server_url=auth_server_url,
    )
    pkce = PKCEParameters.generate()
    state = secrets.token_urlsafe(32)
    if asm is not None and asm.authorization_endpoint:
        endpoint = str(asm.authorization_endpoint)
    else:
        endpoint = urljoin(context.get_authorization_base_url(server_url), "/authorize")
    await OAuthUrlGuard(server_url).check(endpoint)  # the user's browser takes the code back from there
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": pkce.code_challenge,
        "code_challenge_method": "S256",
    }
    if context.should_include_resource_param(None):
        params["resource"] = context.get_resource_url()  # RFC 8707
    if scope:
        params["scope"] = scope
        if "offline_access" in scope.split():
            params["prompt"] = "consent"
    data = {
        "code_verifier": pkce.code_verifier,
        "redirect_uri": redirect_uri,
        "server_url": server_url,
        "scope": scope,
        "client_info": client.model_dump(mode="json", exclude_none=True),
        "prm": prm.model_dump(mode="json", exclude_none=True) if prm else None,
        "asm": asm.model_dump(mode="json", exclude_none=True) if asm else None,
        "auth_server_url": auth_server_url,
    }
    await run_db(_flow_store, server=server, user=user, state=state, data=data)
    return f"{endpoint}?{urlencode(params)}"


@transaction.atomic
def _flow_store(*, server: McpServer, user: User, state: str, data: dict[str, Any]) -> None:
    McpOAuthFlow.objects.filter(server=server, user=user).delete()  # one sign-in at a time per server
    McpOAuthFlow.objects.filter(created_at__lt=timezone.now() - FLOW_TTL).delete()
    McpOAuthFlow.objects.create(state=state, server=server, user=user, data=_seal(data))


@transaction.atomic
def _flow_take(*, state: str, user: User) -> tuple[McpServer, dict[str, Any]]:
    """The flow ``state`` names, removed (it is used once); ValidationFailed when none is (still) under way."""
    flow = McpOAuthFlow.objects.select_for_update().select_related("server").filter(state=state, user=user).first()
    if flow is None:
        raise ValidationFailed("No sign-in is under way with this state; start again.", code="oauth_unknown_state")
    flow.delete()
    if flow.created_at < timezone.now() - FLOW_TTL:
        raise ValidationFailed("The sign-in took too long; start again.", code="oauth_flow_expired")
    return flow.server, _open(flow.data)


@transaction.atomic
def _grant_store(
    *, server: McpServer, user: User, tokens: OAuthToken, client_info: OAuthClientInformationFull, redirect_uri: str
) -> None:
    _row, previous = _stored(server.name, user.pk)
    data = {
        "tokens": tokens.model_dump(mode="json", exclude_none=True),
        "client_info": client_info.model_dump(mode="json", exclude_none=True),
        "redirect_uri": redirect_uri,
    }
    if _recent_refusals(previous):  # counted on until the server asks for something else
        data |= {"refused_upgrades": previous["refused_upgrades"], "refused_at": previous["refused_at"]}
    McpOAuthToken.objects.update_or_create(
        server=server,
        user=user,
        defaults={
            "data": _seal(data),
            "signed_in_at": timezone.now(),
            "expires_at": _expires_at(tokens),
            "scope": tokens.scope or "",
            "needs_scope": "",
        },
    )
    transaction.on_commit(partial(user_connection_close_here, server.name, user.pk))


async def oauth_flow_finish(
    *, user: User, state: str, code: str | None, iss: str | None = None, error: str | None = None
) -> str:
    """Complete ``user``'s sign-in at the callback: exchange the code, store the tokens; the server's name.

    ValidationFailed for an unknown or stale state, or a refusal by the authorization server; UpstreamError
    when the token exchange fails.
    """
    server, data = await run_db(_flow_take, state=state, user=user)
    if error:
        raise ValidationFailed(
            f"The authorization server did not grant access: {error}.",
            code="oauth_denied",
            details={"server": server.name},
        )
    if not code:
        raise ValidationFailed("The callback carries no code.", code="oauth_no_code", details={"server": server.name})
    asm = OAuthMetadata.model_validate(data["asm"]) if data.get("asm") else None
    prm = ProtectedResourceMetadata.model_validate(data["prm"]) if data.get("prm") else None
    if not data.get("client_info"):  # unreadable after a key change: start again
        raise ValidationFailed("This sign-in can no longer be completed; start it again.", code="oauth_stale_state")
    client = OAuthClientInformationFull.model_validate(data["client_info"])
    try:
        validate_authorization_response_iss(iss, asm)  # RFC 9207
    except OAuthFlowError as exc:
        raise ValidationFailed(str(exc), code="oauth_issuer_mismatch") from exc
    context = OAuthContext(
        server_url=data["server_url"],
        client_metadata=OAuthClientMetadata(redirect_uris=[AnyUrl(data["redirect_uri"])], scope=data.get("scope")),
        storage=_MemoryTokenStorage(),
        redirect_handler=None,
        callback_handler=None,
        protected_resource_metadata=prm,
        oauth_metadata=asm,
        auth_server_url=data.get("auth_server_url"),
        client_info=client,
    )
    if asm is not None and asm.token_endpoint:
        token_url = str(asm.token_endpoint)
    else:
        token_url = urljoin(context.get_authorization_base_url(data["server_url"]), "/token")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": data["redirect_uri"],
        "client_id": client.client_id,
        "code_verifier": data["code_verifier"],
    }
    if context.should_include_resource_param(None):
        form["resource"] = context.get_resource_url()
    form, headers = context.prepare_token_auth(form, {"Content-Type": "application/x-www-form-urlencoded"})
    async with oauth_http_client(data["server_url"]) as http:
        try:
            response = await http.post(token_url, data=form, headers=headers)
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"The token endpoint cannot be reached: {exc}", code="mcp_oauth_token") from exc
        if response.status_code not in (200, 201):
            raise UpstreamError(f"The token exchange failed (HTTP {response.status_code}).", code="mcp_oauth_token")
        try:
            tokens = await handle_token_response_scopes(response)
        except (OAuthFlowError, PydanticValidationError) as exc:
            raise UpstreamError(
                "The token endpoint answered something that is not a token.", code="mcp_oauth_token"
            ) from exc
    if tokens.scope is None:
        tokens.scope = data.get("scope")
    await run_db(
        _grant_store, server=server, user=user, tokens=tokens, client_info=client, redirect_uri=data["redirect_uri"]
    )
    return server.name
