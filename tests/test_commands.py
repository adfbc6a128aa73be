"""Management commands: createapikey, ensureadmin and devsetup."""

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import User
from mcp_servers.models import McpServer

pytestmark = pytest.mark.django_db


def test_createapikey_prints_a_working_key_on_the_last_line(user):
    out = io.StringIO()

    call_command("createapikey", "alice", "--name", "ci", stdout=out, stderr=io.StringIO())

    key = out.getvalue().strip().splitlines()[-1]
    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert user.api_keys.get().name == "ci"


def test_createapikey_for_unknown_user_fails_cleanly():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("createapikey", "nobody")


def test_ensureadmin_creates_once_and_keeps_the_password(settings):
    settings.ADMIN_USERNAME = "boss"
    settings.ADMIN_PASSWORD = "first-password-123"
    call_command("ensureadmin", stdout=io.StringIO())
    settings.ADMIN_PASSWORD = "second-password-456"

    out = io.StringIO()
    call_command("ensureadmin", stdout=out)

    boss = User.objects.get(username="boss")
    assert boss.is_superuser
    assert boss.is_staff
    assert boss.check_password("first-password-123")
    assert "exists" in out.getvalue()


def test_ensureadmin_generates_a_password_when_none_is_set(settings):
    settings.ADMIN_USERNAME = "boss"
    settings.ADMIN_PASSWORD = ""
    out = io.StringIO()

    call_command("ensureadmin", stdout=out)

    password = out.getvalue().strip().splitlines()[-1].rsplit(": ", 1)[1]
    assert User.objects.get(username="boss").check_password(password)


@pytest.mark.django_db(transaction=True)
def test_devsetup_migrates_only_what_is_unapplied_and_a_second_run_does_no_migration_work(settings):
    # given: a database one migration behind, no admin, no MCP servers
    settings.ADMIN_USERNAME = "boss"
    settings.ADMIN_PASSWORD = "first-password-123"
    call_command("migrate", "usage", "0002_usagerollup_usagedaily", verbosity=0)
    try:
        first, second = io.StringIO(), io.StringIO()

        # when
        call_command("devsetup", stdout=first)
        call_command("devsetup", stdout=second)
    finally:
        call_command("migrate", verbosity=0)  # the test database stays current whatever happened

    # then: the first run applied that one migration and set everything up
    assert first.getvalue().startswith("Migrations: applying 1.\n")
    assert "Applying usage.0003_drop_covered_fk_indexes... OK" in first.getvalue()
    assert "Created admin user 'boss'." in first.getvalue()
    assert "Created MCP servers: " in first.getvalue()
    # and the second found nothing to do
    assert second.getvalue().splitlines() == [
        "Migrations: none to apply.",
        "Admin user 'boss' exists; password unchanged.",
        "Default MCP servers already configured.",
    ]
    assert User.objects.get(username="boss").check_password("first-password-123")
    assert McpServer.objects.filter(name="time").exists()
