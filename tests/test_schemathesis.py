"""The API against its own OpenAPI schema: Schemathesis over every operation, with every check, on a live server.

The platform runs as a real process (Daphne serving platform_site.asgi, as in production) on the test
database, with the providers pointed at the local fakes (tests/fakes) so turns really run, and the test
MCP server connected. ``schemathesis run`` then works through every phase (coverage, fuzzing, stateful)
with ``--checks all``: no server errors, every status and body as documented, invalid input refused,
valid input accepted. tests/schemathesis.toml holds the settings, each narrowing with its reason.

SCHEMATHESIS_MAX_EXAMPLES (default 20) bounds the examples per operation and phase; SCHEMATHESIS_SEED
(default fixed, so CI is repeatable; ``random`` for a new one) picks the data.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accounts.services import api_key_create
from prompts.models import SystemPrompt

from .conftest import platform_process, stdio_test_server
from .factories import ChatFactory, UserFactory
from .fakes.providers import MODELS

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261201")
# The run takes about a minute here; CI's budget for it is four.
TIMEOUT_SECONDS = 240


@pytest.mark.timeout(TIMEOUT_SECONDS + 60)
def test_the_api_answers_as_its_openapi_schema_says(providers, tmp_path):
    # given a staff user (so the staff-only MCP operations are reached) with an API key and a spare one,
    user = UserFactory(username="fuzz", is_staff=True)
    key = api_key_create(owner=user, name="schemathesis").secret
    spare = api_key_create(owner=user, name="spare").api_key
    # something of each kind to find, and the test MCP server (short timeouts: the fuzzer's tool calls)
    ChatFactory(owner=user)
    SystemPrompt.objects.create(owner=user, name="greeting", content="Be kind.", visibility="shared")
    stdio_test_server("test", timeout_seconds=5).save()

    with platform_process(
        RATE_LIMIT_PER_MINUTE="1000000",
        # ignored_auth probes each operation with a made-up key, all from this one address.
        API_KEY_FAILURE_LIMIT="1000000",
        DEFAULT_PROVIDER="openai",
        DEFAULT_MODEL=MODELS["openai"],
        MCP_CONNECT_AT_START="1",
    ) as url:
        # when Schemathesis runs over the whole schema
        command = [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{url}/api/schema/",
            "--checks",
            "all",
            "--max-examples",
            MAX_EXAMPLES,
            "--workers",
            "2",
            "--header",
            f"Authorization: Bearer {key}",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ]
        if SEED != "random":
            command += ["--seed", SEED]
        started = time.monotonic()
        result = subprocess.run(
            command,
            cwd=tmp_path,  # its caches go there, not into the working tree
            env={**os.environ, "SCHEMATHESIS_SPARE_KEY_ID": str(spare.pk)},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        took = time.monotonic() - started

    # then nothing failed: no server error, no undocumented status or body, no check
    output = result.stdout + result.stderr
    (tmp_path / "report" / "output.txt").write_text(output)
    assert result.returncode == 0, _failures(output)
    print(f"schemathesis: {took:.0f} s; {output.strip().splitlines()[-1]}")


def _failures(output: str) -> str:
    """The report from its failures on, each line cut short: a request body may be a megabyte."""
    lines = [line[:300] for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if "FAILURES" in line), max(0, len(lines) - 100))
    return "\n".join(lines[start : start + 400])
