"""MCP's official conformance suite drives ``manage.py mcp_conformance_client`` (scripts/conformance.py).

The suite's scenario servers judge the platform's host as an MCP client; CI runs every scenario, these
tests the ones that must never regress (timing-judged ones, like sse-retry, only run in CI's full run).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "conformance.py"


def _script():
    spec = importlib.util.spec_from_file_location("conformance_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conformance = _script()
needs_node = pytest.mark.skipif(conformance.node_bin_dir() is None, reason="Node 22+ is not installed")


def _database_url() -> str:
    """The test database, for the command the suite starts in a process of its own."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _run_suite(tmp_path, scenarios: list[str]) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """scripts/conformance.py for ``scenarios`` on the test database: the finished process and its results."""
    report = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *(arg for name in scenarios for arg in ("--scenario", name)),
            "--json",
            str(report),
            "--results",
            str(tmp_path / "suite"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _database_url()},
        timeout=540,
    )
    return done, json.loads(report.read_text()) if report.exists() else []


@needs_node
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_the_suite_passes_initialize_tools_call_and_elicitation_defaults(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the command runs in another process and needs a database it can reach")
    scenarios = ["initialize", "tools_call", "elicitation-sep1034-client-defaults"]
    done, results = _run_suite(tmp_path, scenarios)

    assert done.returncode == 0, done.stdout + done.stderr
    assert [(r["scenario"], r["passed"], r["reasons"]) for r in results] == [(name, True, []) for name in scenarios]
    assert "conformance: 3 of 3 client scenarios pass" in done.stdout


@needs_node
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
def test_auth_scenarios_pass_through_the_platforms_own_sign_in(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the command runs in another process and needs a database it can reach")
    # discovery, a pre-registered client (client_secret_basic), step-up, the retry limit, 2025-03-26 fallbacks
    scenarios = [
        "auth/metadata-var3",
        "auth/pre-registration",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/2025-03-26-oauth-endpoint-fallback",
    ]
    done, results = _run_suite(tmp_path, scenarios)

    assert done.returncode == 0, done.stdout + done.stderr
    assert [(r["scenario"], r["passed"], r["reasons"]) for r in results] == [(name, True, []) for name in scenarios]
    # the platform's own limit ended the retry-limit scenario: three sign-ins, then no more offered
    (retry_run,) = (tmp_path / "suite" / "runs" / "auth").glob("scope-retry-limit-*")
    checks = json.loads((retry_run / "checks.json").read_text())
    assert [c["status"] for c in checks if c["id"] == "scope-retry-auth-attempt"] == ["INFO"] * 3
    assert "mcp_oauth_scope_refused" not in (retry_run / "stdout.txt").read_text()  # the message, not the code
    assert "refused 3 sign-ins in a row" in (retry_run / "stdout.txt").read_text()


def test_every_must_pass_scenario_is_outside_the_baseline_and_the_baseline_gives_reasons():
    config = conformance.load_config()

    assert config["package"].startswith("@modelcontextprotocol/conformance@")
    assert not set(config["must_pass"]) & set(config["baseline"])
    assert all(isinstance(reason, str) and reason for reason in config["baseline"].values())
    # every auth/* scenario of the released spec versions must pass
    assert {name for name in config["must_pass"] if name.startswith("auth/")} >= {
        "auth/basic-cimd",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/pre-registration",
        "auth/token-endpoint-auth-basic",
        "auth/token-endpoint-auth-post",
        "auth/token-endpoint-auth-none",
        "auth/2025-03-26-oauth-metadata-backcompat",
        "auth/2025-03-26-oauth-endpoint-fallback",
    }


def test_the_command_needs_a_scenario(monkeypatch):
    monkeypatch.delenv("MCP_CONFORMANCE_SCENARIO", raising=False)

    with pytest.raises(CommandError, match="No scenario: pass --scenario or set MCP_CONFORMANCE_SCENARIO"):
        call_command("mcp_conformance_client", "http://127.0.0.1:9/mcp")


def test_the_command_rejects_a_context_that_is_not_a_json_object(monkeypatch):
    monkeypatch.setenv("MCP_CONFORMANCE_SCENARIO", "initialize")
    monkeypatch.setenv("MCP_CONFORMANCE_CONTEXT", "[1, 2]")

    with pytest.raises(CommandError, match="MCP_CONFORMANCE_CONTEXT must be a JSON object"):
        call_command("mcp_conformance_client", "http://127.0.0.1:9/mcp")
