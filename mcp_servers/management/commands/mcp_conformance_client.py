"""``mcp_conformance_client URL``: the client command the MCP conformance suite runs (scripts/conformance.py).

The suite passes the scenario's server URL as the last argument, the scenario in MCP_CONFORMANCE_SCENARIO and
extra data (credentials) as JSON in MCP_CONFORMANCE_CONTEXT. Prints what the client did as one JSON line and
exits non-zero when it could not connect or a call failed.
"""

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcp_servers.conformance import conformance_client_run


class Command(BaseCommand):
    help = "Connect the platform's MCP host to a conformance scenario's server at URL and do what the scenario asks."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The scenario server's URL (the suite appends it).")
        parser.add_argument(
            "--scenario",
            default=None,
            help="The scenario's name (default: the MCP_CONFORMANCE_SCENARIO environment variable).",
        )
        parser.add_argument(
            "--timeout", type=float, default=20.0, help="Seconds to wait for the connection and for each call."
        )

    def handle(self, *args: object, url: str, scenario: str | None, timeout: float, **options: object) -> None:
        scenario = scenario or os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
        if not scenario:
            raise CommandError("No scenario: pass --scenario or set MCP_CONFORMANCE_SCENARIO.")
        if timeout <= 0:
            raise CommandError("--timeout must be positive.")
        raw = os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}"
        try:
            context: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CommandError(f"MCP_CONFORMANCE_CONTEXT is not JSON: {exc}") from exc
        if not isinstance(context, dict):
            raise CommandError("MCP_CONFORMANCE_CONTEXT must be a JSON object.")
        run = conformance_client_run(url=url, scenario=scenario, context=context, timeout_seconds=timeout)
        self.stdout.write(json.dumps(run.to_dict(), sort_keys=True))
        if not run.ok:
            reason = run.error or next((f"{c.tool}: {c.text}" for c in run.calls if c.is_error), run.status)
            raise CommandError(f"Scenario {scenario}: {reason}")
