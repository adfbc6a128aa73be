"""Project-wide guarantees: migrations in sync, OpenAPI schema clean, Celery wiring, ASGI routing."""

import io
import os
import subprocess
import sys

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_migrations_are_in_sync():
    # raises SystemExit(1) when a model change has no migration
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_openapi_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    text = out.read_text()
    for path in ("/api/me", "/api/keys", "/api/prompts/{prompt_id}", "/api/chats/{chat_id}/messages", "/api/usage"):
        assert f"{path}:" in text


def test_docs_and_schema_are_served(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert docs.status_code == 200
    # Swagger UI comes from the sidecar package's static files, not a CDN.
    assert "cdn" not in docs.content.decode().lower()


def test_every_beat_schedule_entry_names_a_registered_task():
    from django.conf import settings

    from platform_site.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks


def test_system_checks_pass():
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_home_page_needs_login(client, user):
    anonymous = client.get("/")
    client.force_login(user)
    signed_in = client.get("/")

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")
    assert signed_in.status_code == 200
    page = signed_in.content.decode()
    assert "alice" in page
    assert "chats/app.js" in page
    assert client.get("/login/").status_code == 302  # already signed in


def test_every_environment_variable_read_by_the_code_is_documented():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    readers = r"(?:os\.environ\.get|os\.getenv|env_bool|env_int|env_list|env_float)"
    pattern = re.compile(readers + r"""\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    sources = [p for p in root.glob("*/**/*.py") if ".venv" not in p.parts and "tests" not in p.parts]

    names = {name for path in sources for name in pattern.findall(path.read_text())}

    assert "DATABASE_URL" in names
    assert sorted(name for name in names if f"`{name}`" not in readme) == []


def test_compose_file_defines_the_production_shape():
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())

    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])
    web_env = compose["services"]["web"]["environment"]
    assert web_env["DATABASE_URL"].startswith("postgres://")
    assert web_env["REDIS_URL"].startswith("redis://")


def test_a_web_process_loads_every_provider_sdk_as_it_starts():
    # Loaded by the first turn instead, an SDK held the event loop of every connection for a second or more.
    sdks = ("anthropic", "google.genai", "ollama", "openai")
    code = f"import sys, platform_site.asgi; print(sorted(m for m in {sdks!r} if m in sys.modules))"
    env = {**os.environ, "MCP_CONNECT_AT_START": "0", "DJANGO_SETTINGS_MODULE": "platform_site.settings"}

    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(sorted(sdks))
