"""OAuth 2.1 for remote MCP servers: each user's tokens, the browser sign-in, and the auth of connections.

A server with ``auth = oauth`` is per-user. A user signs in in their browser:

- ``oauth_flow_start`` discovers the server's protected-resource metadata and its authorization server's
  metadata, takes the client (one registered beforehand in admin, the one this user registered before, or a
  new dynamic registration), makes a PKCE pair and a state, keeps them (encrypted) in an ``McpOAuthFlow``
  row for a few minutes, and returns the authorization URL the browser is sent to;
- ``oauth_flow_finish``, at the platform's callback, takes the row back by its state (for the same user,
  once), exchanges the code for tokens and stores them encrypted in the user's ``McpOAuthToken``.

Both steps use the SDK's own helpers (``mcp.client.auth.utils``, ``OAuthContext``). A connection then gets
the SDK's ``OAuthClientProvider`` over a database-backed ``TokenStorage``: it adds the bearer token and
refreshes it when it expires. When the server answers 401 (a revoked token, a refresh that failed) or 403
``insufficient_scope`` (step-up), the provider would send a person to the authorization server: our
redirect handler instead clears the user's tokens, keeps the scope asked for, and ends the connection; the
user sees the server as "needs-sign-in" until they connect again. No reconnect loop: nothing retries
without a new sign-in.

``auth = client_credentials`` servers are shared: the SDK's ``ClientCredentialsOAuthProvider`` gets a
token with the client ID and secret set in admin, kept in memory for the connection's life.
"""

import json
import logging
import secrets
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
from cryptography.fernet import InvalidToken
from django.db import transaction
from django.utils import timezone
from mcp.client.auth import OAuthClientProvider, OAuthFlowError, PKCEParameters
from mcp.client.auth.exceptions import OAuthRegistrationError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.auth.oauth2 import OAuthContext, check_registration_usable
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
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
    union_scopes,
    validate_authorization_response_iss,
    validate_metadata_issuer,
)
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import calculate_token_expiry
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import AnyUrl

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import UpstreamError, ValidationFailed

from .config import ConfigError, ServerSpec, expanded_client_secret, expanded_headers, expanded_url
from .credentials import credentials_fernet
from .models import AuthMode, McpOAuthFlow, McpOAuthToken, McpServer

logger = logging.getLogger(__name__)

FLOW_TTL = timedelta(minutes=10)
CLIENT_NAME = "LLM Platform"
UNUSED_REDIRECT_URI = "https://localhost/mcp-oauth-not-used"


class SignInRequired(Exception):
    """The server wants the user to sign in (again): their token was refused, or more scope is needed."""


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
def oauth_sign_in_needed(*, server_name: str, user_id: int, scope: str = "") -> None:
    """Forget the user's tokens (their client registration stays); keep the scope the server asked for."""
    row = McpOAuthToken.objects.select_for_update().filter(server__name=server_name, user_id=user_id).first()
    if row is None:
        return
    data = _open(row.data)
    data.pop("tokens", None)
    row.data = _seal(data)
    row.signed_in_at = None
    row.expires_at = None
    row.needs_scope = scope
    row.save(update_fields=["data", "signed_in_at", "expires_at", "needs_scope", "updated_at"])


def _close_connection_here(server_name: str, user_id: int) -> None:
    from .host import current_host

    host = current_host()
    if host is not None:
        host.request_close_user_connection(server_name, user_id)


@transaction.atomic
def oauth_sign_out(*, server: McpServer, user: User) -> None:
    """Forget ``user``'s tokens and registration for ``server`` (the server is then "needs-sign-in")."""
    McpOAuthToken.objects.filter(server=server, user=user).delete()
    McpOAuthFlow.objects.filter(server=server, user=user).delete()
    transaction.on_commit(partial(_close_connection_here, server.name, user.pk))


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


class _UserOAuthProvider(OAuthClientProvider):
    """The SDK's provider, told when the stored access token expires, so it refreshes it instead of sending it.

    The SDK keeps the expiry only in memory (from ``expires_in`` when it got the token); a token loaded from
    storage would otherwise count as valid until the server refuses it.
    """

    async def _initialize(self) -> None:
        await super()._initialize()
        storage = self.context.storage
        if isinstance(storage, DbTokenStorage):
            self.context.token_expiry_time = await storage.expiry()


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


def connection_auth(
    spec: ServerSpec, *, on_sign_in_required: Callable[[str], None] | None = None
) -> httpx2.Auth | None:
    """The httpx auth for a connection to ``spec``: None without OAuth; ConfigError when it cannot be built."""
    if spec.auth == AuthMode.CLIENT_CREDENTIALS:
        with warnings.catch_warnings():
            # Without an issuer the SDK warns (deprecated): the admin chose to trust the discovered one.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return ClientCredentialsOAuthProvider(
                server_url=expanded_url(spec),
                storage=_MemoryTokenStorage(),
                client_id=spec.oauth_client_id,
                client_secret=expanded_client_secret(spec),
                token_endpoint_auth_method="client_secret_post",  # noqa: S106  (a method's name)
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
        await run_db(oauth_sign_in_needed, server_name=server_name, user_id=user_id, scope=scope)
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
        token_endpoint_auth_method="client_secret_post" if spec.oauth_client_secret else "none",
        application_type="web",
    )
    provider = _UserOAuthProvider(
        server_url=expanded_url(spec),
        client_metadata=metadata,
        storage=DbTokenStorage(server_name, user_id),
        redirect_handler=sign_in_again,
        callback_handler=no_callback,
    )
    return provider


# --- the browser sign-in -------------------------------------------------------------------------------


async def _discover(
    http: httpx2.AsyncClient, server_url: str
) -> tuple[ProtectedResourceMetadata | None, OAuthMetadata | None, str | None, str | None]:
    """(protected-resource metadata, authorization-server metadata, AS URL, challenged scope), as the SDK finds them."""
    challenge_url, challenge_scope = None, None
    try:
        # An unauthenticated request: a protected server's 401 may name its metadata and the scope it wants.
        probe = await http.post(
            server_url,
            json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
            headers={"Accept": "application/json, text/event-stream"},
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


def _previous(*, server: McpServer, user: User) -> tuple[OAuthClientInformationFull | None, str, str]:
    row, stored = _stored(server.name, user.pk)
    client = OAuthClientInformationFull.model_validate(stored["client_info"]) if stored.get("client_info") else None
    return client, (row.needs_scope if row else ""), (row.scope if row else "")


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
    previous_client, needs_scope, granted = await run_db(_previous, server=server, user=user)
    metadata = OAuthClientMetadata(
        redirect_uris=[AnyUrl(redirect_uri)],
        client_name=CLIENT_NAME,
        token_endpoint_auth_method="client_secret_post" if spec.oauth_client_id and client_secret else "none",
        application_type="web",
    )
    async with create_mcp_http_client(headers=headers) as http:
        try:
            prm, asm, auth_server_url, challenged = await _discover(http, server_url)
        except OAuthFlowError as exc:
            raise UpstreamError(f"OAuth discovery failed: {exc}", code="mcp_oauth_discovery") from exc
        issuer = auth_server_url or (str(asm.issuer) if asm else None)
        scope = spec.oauth_scopes or get_client_metadata_scopes(challenged, prm, asm, metadata.grant_types)
        # Step-up: what the server asked for more, with what was granted before (SEP-2350).
        scope = union_scopes(union_scopes(scope, granted or None), needs_scope or None)
        metadata.scope = scope
        client: OAuthClientInformationFull | None
        if spec.oauth_client_id:
            client = OAuthClientInformationFull(
                client_id=spec.oauth_client_id,
                client_secret=client_secret or None,
                redirect_uris=[AnyUrl(redirect_uri)],
                token_endpoint_auth_method=metadata.token_endpoint_auth_method,
            )
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
                check_registration_usable(client)
            except OAuthRegistrationError as exc:
                raise UpstreamError(f"Client registration failed: {exc}", code="mcp_oauth_registration") from exc
            client.issuer = issuer
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
    data = {
        "tokens": tokens.model_dump(mode="json", exclude_none=True),
        "client_info": client_info.model_dump(mode="json", exclude_none=True),
        "redirect_uri": redirect_uri,
    }
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
    transaction.on_commit(partial(_close_connection_here, server.name, user.pk))


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
    async with create_mcp_http_client() as http:
        try:
            response = await http.post(token_url, data=form, headers=headers)
        except httpx2.HTTPError as exc:
            raise UpstreamError(f"The token endpoint cannot be reached: {exc}", code="mcp_oauth_token") from exc
        if response.status_code not in (200, 201):
            raise UpstreamError(f"The token exchange failed (HTTP {response.status_code}).", code="mcp_oauth_token")
        tokens = await handle_token_response_scopes(response)
    if tokens.scope is None:
        tokens.scope = data.get("scope")
    await run_db(
        _grant_store, server=server, user=user, tokens=tokens, client_info=client, redirect_uri=data["redirect_uri"]
    )
    return server.name
