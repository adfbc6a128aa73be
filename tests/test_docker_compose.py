"""docker-compose.yml, .dockerignore and .gitignore: the production shape keeps its promises."""

import fnmatch
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from providers.registry import adapter_classes

from .conftest import platform_process

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "llm-platform:latest"
APP_SERVICES = ("migrate", "web", "worker", "beat")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def settings_env_names() -> set[str]:
    """Every environment variable platform_site/settings.py reads."""
    source = (ROOT / "platform_site" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:bool|list|int|float)\(\s*"([A-Z0-9_]+)"', source))
    names |= set(re.findall(r'os\.environ(?:\.get\(\s*|\[)"([A-Z0-9_]+)"', source))
    return names


def provider_env_names() -> set[str]:
    """What providers/registry.py reads when it builds a client: base URLs and (seeded) key names."""
    names: set[str] = set()
    for kind, adapter in adapter_classes().items():
        if (base_url_env := adapter.base_url_env()) is not None:
            names.add(base_url_env)
        if adapter.requires_api_key:
            names.add(f"{kind.upper()}_API_KEY")
        names |= set(adapter.fallback_key_env)
    return names


def test_the_image_is_built_once_and_run_by_every_app_service(services):
    builders = sorted(name for name, service in services.items() if "build" in service)

    assert builders == ["migrate"]
    assert {name: services[name].get("image") for name in APP_SERVICES} == dict.fromkeys(APP_SERVICES, IMAGE)
    # Everything that runs the image waits for the service that builds it.
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_migrate_waits_for_postgres_and_redis_to_be_healthy(services):
    assert services["migrate"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


@pytest.mark.parametrize("name", ["web", "worker"])
def test_services_calling_providers_reach_the_host_on_linux(services, name):
    assert "host.docker.internal:host-gateway" in services[name]["extra_hosts"]


def test_settings_reads_the_variables_this_test_looks_for():
    names = settings_env_names()

    assert len(names) > 40
    assert {"SECRET_KEY", "DATABASE_POOL_MAX_SIZE", "MCP_CONNECT_TIMEOUT", "LOG_LEVEL"} <= names


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_setting_can_be_passed_to_the_app_services(services, name):
    expected = settings_env_names() | provider_env_names() | {"WEB_CONCURRENCY"}

    missing = expected - set(services[name]["environment"])

    assert missing == set()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_no_variable_is_forced_to_an_empty_string(services, name):
    # "${NAME:-}" sets NAME="" when it is unset, which is not the same as unset: the Anthropic SDK,
    # for one, takes ANTHROPIC_BASE_URL="" as its URL. A bare "NAME:" passes it only when set.
    environment = services[name]["environment"]

    forced_empty = {
        key: value
        for key, value in environment.items()
        if value == "" or (isinstance(value, str) and re.fullmatch(r"\$\{[A-Z0-9_]+:?-\}", value))
    }

    assert forced_empty == {}


def test_web_healthcheck_is_python_choosing_a_host_from_allowed_hosts(services):
    test = services["web"]["healthcheck"]["test"]

    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8000/readyz" in test[3]
    assert "ALLOWED_HOSTS" in test[3]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("allowed_hosts", ["chat.example.com", ".example.com,other.example.org"])
def test_web_healthcheck_passes_whatever_allowed_hosts_is(services, allowed_hosts):
    code = services["web"]["healthcheck"]["test"][3]

    with platform_process(ALLOWED_HOSTS=allowed_hosts) as url:
        port = urlsplit(url).port
        # what the old healthcheck did: a bare 127.0.0.1 is outside these ALLOWED_HOSTS
        with pytest.raises(urllib.error.HTTPError) as bare:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        healthcheck = subprocess.run(
            [sys.executable, "-c", code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
            env={"ALLOWED_HOSTS": allowed_hosts},
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert bare.value.code == 400
    assert healthcheck.returncode == 0, healthcheck.stderr


# --- what stays out of the image and out of git ------------------------------------------------

LOCAL_FILES = [".env", ".env.production", "workspace/notes.txt", "db.sqlite3", "db.sqlite3-wal"]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, cleaned) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize("path", [*LOCAL_FILES, ".venv/bin/python", "accounts/__pycache__/models.cpython-313.pyc"])
def test_local_files_stay_out_of_the_image(path):
    assert dockerignore_excludes(path) is True


@pytest.mark.parametrize("path", ["manage.py", "requirements.txt", "platform_site/settings.py", "templates"])
def test_the_code_still_goes_into_the_image(path):
    assert dockerignore_excludes(path) is False


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
@pytest.mark.parametrize("path", LOCAL_FILES)
def test_local_files_stay_out_of_git(path):
    checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)

    assert checked.returncode == 0
