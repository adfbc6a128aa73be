"""HTTPS settings from the environment, Django's deploy checks on our middleware, and the pages' CSP."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import Client

from platform_site.checks import security_checks_on_our_middleware

ROOT = Path(__file__).resolve().parent.parent
# The production environment README.md documents ("Running in production").
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k3v9-Qx2_wLr8ZpT4sYh6NbJ1mC7dF0gA5eU-oIiRtWyVnXcBzKqHjMlPuGsEaDf",
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "MCP_CREDENTIALS_KEYS": "tYwEiHbptSmzun5mfCOpgQA5q7fSJw9Tq2rcSvPwZtg=",
}
SECRETS = ("SECRET_KEY", "MCP_CREDENTIALS_KEYS")  # the README shows a placeholder for these
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Only the named settings: none of the test run's own (DATABASE_URL, REDIS_URL, DEBUG...) leak in.
    environment = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_deploy_check_is_clean_under_the_documented_production_env():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (3 silenced)."
    assert result.stderr == ""


def test_the_documented_env_is_the_one_in_the_readme():
    readme = (ROOT / "README.md").read_text()

    for name, value in PRODUCTION_ENV.items():
        if name in SECRETS:
            assert f"{name}=<" in readme
        else:
            assert f"{name}={value}" in readme


def test_deploy_check_sees_our_middleware_and_reports_missing_https_settings():
    # Django looks for its own middleware paths; with our subclasses it skipped these checks altogether.
    env = {**PRODUCTION_ENV, "SECURE_SSL_REDIRECT": "0", "SECURE_HSTS_SECONDS": "0", "SECURE_COOKIES": "0"}

    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 1
    reported = sorted({word.strip("():") for word in result.stderr.split() if word.startswith("(security.W")})
    assert reported == ["security.W004", "security.W008", "security.W010", "security.W012", "security.W016"]
    assert result.stderr.count("(security.W010)") == 1


def test_a_removed_middleware_is_reported_under_our_ids(settings):
    settings.MIDDLEWARE = [
        path
        for path in settings.MIDDLEWARE
        if path
        not in ("platform_site.middleware.XFrameOptionsMiddleware", "platform_site.middleware.CsrfViewMiddleware")
    ]

    ids = sorted(message.id for message in security_checks_on_our_middleware(None) if "W00" in message.id)

    # (no security.W019 for X-Frame-Options: like Django, only checked while the middleware is there)
    assert ids == ["platform_site.W002", "platform_site.W003", "security.W004", "security.W008"]
    # Django's own messages are left as they were: silenced, under their own ids.
    assert {message.id for message in run_checks(include_deployment_checks=True)} >= {"security.W002"}


def test_proxy_ssl_header_comes_from_the_environment():
    show = [
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None))",
    ]

    default = run_manage(*show, **PRODUCTION_ENV)
    custom = run_manage(*show, **PRODUCTION_ENV, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_SSL,on")
    off = run_manage(*show, **PRODUCTION_ENV, SECURE_PROXY_SSL_HEADER="none")
    bad = run_manage(*show, **PRODUCTION_ENV, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO")

    assert default.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"
    assert custom.stdout.strip() == "('HTTP_X_FORWARDED_SSL', 'on')"
    assert off.stdout.strip() == "None"
    assert bad.returncode == 1
    assert "SECURE_PROXY_SSL_HEADER must be 'HEADER,value' or 'none'" in bad.stderr


@pytest.mark.django_db
def test_ssl_redirect_sends_pages_to_https_but_not_the_health_probes(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    client = Client()  # a new client builds its middleware with these settings

    page = client.get("/login/")
    live = client.get("/healthz")
    ready = client.get("/readyz")
    secure = client.get("/login/", secure=True)

    assert page.status_code == 301
    assert page["Location"] == "https://testserver/login/"
    assert (live.status_code, ready.status_code) == (200, 200)
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600"


@pytest.mark.django_db
def test_chat_and_login_pages_carry_the_content_security_policy(client, user):
    login = client.get("/login/")
    client.force_login(user)
    chat = client.get("/")

    assert login.status_code == 200
    assert chat.status_code == 200
    assert login["Content-Security-Policy"] == CSP
    assert chat["Content-Security-Policy"] == CSP
    # Nothing inline that the policy would block: the chat page's script and styles are files.
    page = chat.content.decode()
    assert "<script>" not in page
    assert "<style" not in page
    assert "style=" not in page


@pytest.mark.django_db
def test_api_docs_page_gets_a_nonce_for_its_inline_blocks(client):
    docs = client.get("/api/docs/")

    policy = docs["Content-Security-Policy"]
    nonce = policy.split("script-src 'self' 'nonce-", 1)[1].split("'", 1)[0]
    assert len(nonce) >= 16
    assert f"style-src 'self' 'nonce-{nonce}'" in policy
    page = docs.content.decode()
    assert page.count(f'nonce="{nonce}"') == 2
    assert page.count("<script") == page.count("<script src=") + 1
