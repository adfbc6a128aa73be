"""The platform as the client under test of MCP's official conformance suite (``@modelcontextprotocol/conformance``).

The suite starts a scenario's server and runs ``manage.py mcp_conformance_client URL`` with the scenario in
``MCP_CONFORMANCE_SCENARIO`` (and extra data in ``MCP_CONFORMANCE_CONTEXT``). ``conformance_client_run``
connects to that URL the way the platform connects to any remote server, through an ``McpHost`` serving one
``ServerSpec``, and then does what the scenario asks of a client: call its tool, answer its elicitation
the way a non-interactive caller does, sign in. The suite's server judges what it saw.

An ``auth/*`` scenario with a user is signed in to through the platform's own OAuth code: a user and an
``auth = oauth`` server row in the database, the Connect sign-in (``oauth_flow_start``, the authorization
URL followed with httpx instead of a browser, ``oauth_flow_finish``), then the host connects as that user.
"""

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from django.test import override_settings

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import ApplicationError

from .config import ServerSpec
from .host import McpHost
from .interactions import (
    ElicitationAnswer,
    ElicitationRequest,
    SamplingRequest,
    SamplingResult,
    ServerInteractionSettings,
    answer_without_user,
    sample_without_user,
)
from .models import AuthMode, McpServer, NonInteractive, Transport
from .oauth import oauth_flow_finish, oauth_flow_start, oauth_sign_in_missing

SERVER_NAME = "conformance"

# What each scenario's server expects a client to call after connecting (connecting lists the tools).
SCENARIO_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "tools_call": ("add_numbers", {"a": 5, "b": 3}),
    "elicitation-sep1034-client-defaults": ("test_client_elicitation_defaults", {}),
    "sse-retry": ("test_reconnection", {}),
}
# Every auth/* scenario's server offers this tool; the reference client calls it once signed in.
AUTH_SCENARIO_TOOL = "test-tool"
CLIENT_CREDENTIALS_SCENARIOS = ("auth/client-credentials-basic", "auth/client-credentials-jwt")
# The auth/* scenarios signed in to by a user through the platform's browser sign-in (mcp_servers.oauth).
USER_OAUTH_EXCLUDED = (*CLIENT_CREDENTIALS_SCENARIOS, "auth/cross-app-access-complete-flow")
CONFORMANCE_USER = "mcp-conformance"
# The client ID metadata document URL the suite's authorization servers expect (auth/basic-cimd); the
# platform's own would be its MCP_OAUTH_CLIENT_METADATA_URL.
CONFORMANCE_CIMD_URL = "https://conformance-test.local/client-metadata.json"
# Registered at the authorization server and never visited: the code is read off its redirect.
CONFORMANCE_REDIRECT_URI = "http://localhost:8000/api/mcp/oauth/callback"
# How many sign-ins one run may make (the first, then a step-up or a refused token each).
MAX_SIGN_INS = 4


@dataclass(frozen=True)
class ToolCallOutcome:
    tool: str
    is_error: bool
    text: str


@dataclass
class ConformanceRun:
    """What the client did: whether it connected, what it was offered, the calls it made."""

    scenario: str
    status: str = "connecting"
    error: str | None = None
    protocol_version: str | None = None
    tools: list[str] = field(default_factory=list)
    calls: list[ToolCallOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "connected" and not any(call.is_error for call in self.calls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "protocol_version": self.protocol_version,
            "tools": self.tools,
            "calls": [call.__dict__ for call in self.calls],
        }


class NonInteractiveCaller:
    """A caller with nobody behind it, for a server set to accept elicitations with their defaults.

    The conformance suite asks a client to "accept with defaults" (SEP-1034); on the platform that is what
    a non-interactive caller answers when the server's ``elicitation_non_interactive`` says so.
    """

    user_id = 0

    async def sample(self, request: SamplingRequest, config: ServerInteractionSettings) -> SamplingResult:
        return await sample_without_user(request, config)

    async def elicit(self, request: ElicitationRequest, config: ServerInteractionSettings) -> ElicitationAnswer:
        return answer_without_user(request, replace(config, elicitation_non_interactive=NonInteractive.ACCEPT_DEFAULTS))


def uses_user_sign_in(scenario: str) -> bool:
    return scenario.startswith("auth/") and scenario not in USER_OAUTH_EXCLUDED


def conformance_spec(*, url: str, scenario: str, context: dict[str, Any], timeout_seconds: float) -> ServerSpec:
    """The server as an admin would configure it for this scenario (credentials from the suite's context)."""
    auth: str = AuthMode.NONE
    if scenario in CLIENT_CREDENTIALS_SCENARIOS:
        auth = AuthMode.CLIENT_CREDENTIALS
    secret = str(context.get("client_secret") or context.get("private_key_pem") or "")
    spec = ServerSpec(
        name=SERVER_NAME,
        transport=Transport.STREAMABLE_HTTP,
        url=url,
        timeout_seconds=timeout_seconds,
        auth=auth,
        oauth_client_id=str(context.get("client_id", "")),
        oauth_client_secret=secret,
    )
    return spec.with_fingerprint()


def scenario_calls(scenario: str, tools: list[str]) -> list[tuple[str, dict[str, Any]]]:
    if scenario in SCENARIO_CALLS:
        return [SCENARIO_CALLS[scenario]]
    if scenario.startswith("auth/") and AUTH_SCENARIO_TOOL in tools:
        return [(AUTH_SCENARIO_TOOL, {})]
    return []


async def _drive(host: McpHost, spec: ServerSpec, run: ConformanceRun) -> None:
    await host.aconfigure([spec])
    await host.await_ready(spec.timeout_seconds)
    status = next(status for status in await host.astatuses() if status.name == SERVER_NAME)
    run.status, run.error, run.protocol_version = status.status, status.last_error, status.protocol_version
    if status.status != "connected":
        return
    offered = {tool.name: tool.namespaced_name for tool in await host.atools([SERVER_NAME])}
    run.tools = sorted(offered)
    for tool, arguments in scenario_calls(run.scenario, run.tools):
        name = offered.get(tool)
        if name is None:
            run.calls.append(ToolCallOutcome(tool=tool, is_error=True, text="the server does not offer this tool"))
            continue
        result = await host.acall_tool(name, arguments, interaction=NonInteractiveCaller())
        run.calls.append(ToolCallOutcome(tool=tool, is_error=result.is_error, text=result.text))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _oauth_server_row(*, spec: ServerSpec) -> tuple[User, McpServer]:
    """A user and an ``auth = oauth`` server row for the scenario, fresh (no sign-in left from an earlier run)."""
    existing = McpServer.objects.filter(name=spec.name).first()
    if existing is not None and urlsplit(existing.url).hostname not in LOOPBACK:
        # Scenario servers run on this machine: a row pointing elsewhere is an admin's, and stays.
        raise ConformanceSignInError(f"an MCP server named {spec.name!r} that is not a conformance server exists")
    user, _created = User.objects.get_or_create(username=CONFORMANCE_USER)
    McpServer.objects.filter(name=spec.name).delete()  # with its users' tokens and sign-ins under way
    server = McpServer.objects.create(
        name=spec.name,
        transport=spec.transport,
        url=spec.url,
        timeout_seconds=max(1, math.ceil(spec.timeout_seconds)),
        auth=AuthMode.OAUTH,
        oauth_client_id=spec.oauth_client_id,
        oauth_client_secret=spec.oauth_client_secret,
        access_restricted=True,  # never offered to anyone but the command's own user
    )
    server.allowed_users.set([user])
    return user, server


async def sign_in_without_browser(*, server: McpServer, user: User, redirect_uri: str) -> str:
    """The platform's browser sign-in with nobody at the browser: start it, follow the authorization URL
    (an authorization server that grants at once redirects to ``redirect_uri`` with a code), finish it."""
    authorization_url = await oauth_flow_start(server=server, user=user, redirect_uri=redirect_uri)
    async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
        response = await http.get(authorization_url)
    location = response.headers.get("location", "")
    if not response.is_redirect or not location.startswith(redirect_uri):
        raise ConformanceSignInError(f"the authorization server answered HTTP {response.status_code}, no redirect")
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    return await oauth_flow_finish(
        user=user, state=query.get("state", ""), code=query.get("code"), iss=query.get("iss"), error=query.get("error")
    )


class ConformanceSignInError(Exception):
    pass


async def _needs_sign_in(user: User, server_name: str) -> bool:
    missing = await run_db(oauth_sign_in_missing, user_id=user.pk, server_names=[server_name])
    return bool(missing)


async def _drive_signed_in(host: McpHost, spec: ServerSpec, run: ConformanceRun) -> None:
    """An ``auth = oauth`` server: sign the user in, connect as them, call the tool; sign in again when the
    server asks for it (step-up, a refused token), as a person would, at most MAX_SIGN_INS times."""
    user, server = await run_db(_oauth_server_row, spec=spec)
    await host.aconfigure([await run_db(ServerSpec.from_row, server)])
    sign_ins = 0
    for _attempt in range(2 * MAX_SIGN_INS + 1):  # a sign-in, then a connection, each time round
        if await _needs_sign_in(user, spec.name):
            if sign_ins >= MAX_SIGN_INS:
                run.status, run.error = "needs-sign-in", f"still refused after {sign_ins} sign-ins"
                return
            sign_ins += 1
            try:
                await sign_in_without_browser(server=server, user=user, redirect_uri=CONFORMANCE_REDIRECT_URI)
            except (ApplicationError, ConformanceSignInError, httpx2.HTTPError) as exc:
                run.status, run.error = "needs-sign-in", f"sign-in {sign_ins}: {exc}"
                return
        status = await host.auser_status(spec.name, user)
        run.status, run.error, run.protocol_version = status.status, status.last_error, status.protocol_version
        if status.status == "needs-sign-in" or await _needs_sign_in(user, spec.name):
            continue
        if status.status != "connected":
            return
        offered = {tool.name: tool.namespaced_name for tool in await host.atools([spec.name], user=user)}
        run.tools = sorted(offered)
        calls = []
        for tool, arguments in scenario_calls(run.scenario, run.tools):
            result = await host.acall_tool(offered[tool], arguments, user=user, interaction=NonInteractiveCaller())
            calls.append(ToolCallOutcome(tool=tool, is_error=result.is_error, text=result.text))
        if any(call.is_error for call in calls) and await _needs_sign_in(user, spec.name):
            continue  # the call was refused for want of scope (step-up): sign in again and call again
        run.calls = calls
        return
    run.status, run.error = "needs-sign-in", "the server kept asking for a sign-in"


def conformance_client_run(
    *, url: str, scenario: str, context: dict[str, Any] | None = None, timeout_seconds: float = 20.0
) -> ConformanceRun:
    """Connect to the scenario's server at ``url`` with a host of its own and do what ``scenario`` asks.

    ``auth/*`` scenarios with a user go through the platform's own sign-in, so they need the database:
    the run makes a user and a server row of its own there.
    """
    spec = conformance_spec(url=url, scenario=scenario, context=context or {}, timeout_seconds=timeout_seconds)
    run = ConformanceRun(scenario=scenario)
    # A host of its own: only this server, no configuration from the database, no change notices.
    host = McpHost(listen_for_changes=False)
    try:
        if uses_user_sign_in(scenario):
            # The suite's authorization servers know the client by this client ID metadata document URL.
            with override_settings(MCP_OAUTH_CLIENT_METADATA_URL=CONFORMANCE_CIMD_URL):
                asyncio.run(_drive_signed_in(host, spec, run))
        else:
            asyncio.run(_drive(host, spec, run))
    finally:
        host.close()
    return run
