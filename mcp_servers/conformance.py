"""The platform as the client under test of MCP's official conformance suite (``@modelcontextprotocol/conformance``).

The suite starts a scenario's server and runs ``manage.py mcp_conformance_client URL`` with the scenario in
``MCP_CONFORMANCE_SCENARIO`` (and extra data in ``MCP_CONFORMANCE_CONTEXT``). ``conformance_client_run``
connects to that URL the way the platform connects to any remote server, through an ``McpHost`` serving one
``ServerSpec``, and then does what the scenario asks of a client: call its tool, answer its elicitation
the way a non-interactive caller does, sign in. The suite's server judges what it saw.
"""

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

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
from .models import AuthMode, NonInteractive, Transport

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


def conformance_spec(*, url: str, scenario: str, context: dict[str, Any], timeout_seconds: float) -> ServerSpec:
    """The server as an admin would configure it for this scenario (credentials from the suite's context)."""
    auth: str = AuthMode.NONE
    if scenario in CLIENT_CREDENTIALS_SCENARIOS:
        auth = AuthMode.CLIENT_CREDENTIALS
    spec = ServerSpec(
        name=SERVER_NAME,
        transport=Transport.STREAMABLE_HTTP,
        url=url,
        timeout_seconds=timeout_seconds,
        auth=auth,
        oauth_client_id=str(context.get("client_id", "")),
        oauth_client_secret=str(context.get("client_secret", "")),
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


def conformance_client_run(
    *, url: str, scenario: str, context: dict[str, Any] | None = None, timeout_seconds: float = 20.0
) -> ConformanceRun:
    """Connect to the scenario's server at ``url`` with a host of its own and do what ``scenario`` asks."""
    spec = conformance_spec(url=url, scenario=scenario, context=context or {}, timeout_seconds=timeout_seconds)
    run = ConformanceRun(scenario=scenario)
    # A host of its own: only this server, no configuration from the database, no change notices.
    host = McpHost(listen_for_changes=False)
    try:
        asyncio.run(_drive(host, spec, run))
    finally:
        host.close()
    return run
