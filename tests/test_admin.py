"""Django admin: every screen renders; API keys show their secret once; MCP secrets are masked."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_hash
from chats.models import ModelAlias, ToolApproval, ToolExecution
from mcp_servers.credentials import encrypt_values
from mcp_servers.models import McpServerHealthSnapshot, McpServerLogEntry, McpUserCredential
from providers.models import Provider, ProviderHealthSnapshot, ProviderModel
from usage.models import UsageDaily, UsageRecord
from usage.services import usage_rollup_day

from .factories import ChatFactory, McpServerFactory, MessageFactory, PromptFactory, UsageRecordFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(superuser)
    return client


@pytest.fixture
def populated(user):
    chat = ChatFactory(owner=user)
    message = MessageFactory(chat=chat, position=0)
    ToolExecution.objects.create(message=message, server="time", tool="now")
    PromptFactory(owner=user)
    Group.objects.create(name="operators")
    api_key_create(owner=user, name="k")
    ProviderModel.objects.create(provider=Provider.objects.get(name="openai"), model_id="gpt-4o")
    UsageRecordFactory(user=user)
    usage_rollup_day(day=UsageRecord.objects.get().created_at.date())
    ProviderHealthSnapshot.objects.create(provider=Provider.objects.get(name="ollama"), status="ok", latency_ms=3)
    McpServerHealthSnapshot.objects.create(server="time", status="connected", tool_count=2)
    McpServerLogEntry.objects.create(server="time", level="info", logger="clock", data={"ticks": 1})
    server = McpServerFactory(name="time", user_vars={"TOKEN": {"secret": True}})
    McpUserCredential.objects.create(server=server, user=user, values=encrypt_values({"TOKEN": "t"}))
    ToolApproval.objects.create(
        chat=chat, turn_id="t", tool_call_id="c", server="time", tool="now", expires_at=message.created_at
    )
    alias = ModelAlias.objects.create(
        name="assistant", provider=Provider.objects.get(name="openai"), model="gpt-4o", options={"temperature": 0.2}
    )
    alias.mcp_servers.add(server)


ADMIN_MODELS = list(admin.site._registry)
# Written only by periodic tasks, or records of what users did: their admins forbid adding.
READ_ONLY_MODELS = {
    UsageDaily,
    ProviderHealthSnapshot,
    McpServerHealthSnapshot,
    McpServerLogEntry,
    McpUserCredential,
    ToolApproval,
}


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_changelist_renders(admin_client, populated, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    response = admin_client.get(url)

    assert response.status_code == 200


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_add_page_renders_or_is_forbidden_by_design(admin_client, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")

    response = admin_client.get(url)

    assert response.status_code == (200 if model not in READ_ONLY_MODELS else 403)


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_change_page_renders(admin_client, populated, model):
    obj = model.objects.first()
    if obj is None:  # every registered model has a row from the fixtures or the seed migration
        pytest.fail(f"no {model._meta.label} row to open")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])

    assert admin_client.get(url).status_code == 200


def test_adding_an_api_key_shows_the_secret_once(admin_client, user):
    url = reverse("admin:accounts_apikey_add")

    response = admin_client.post(
        url, {"owner": user.pk, "name": "from admin", "expires_at_0": "", "expires_at_1": ""}, follow=True
    )

    api_key = ApiKey.objects.get(name="from admin")
    shown = [str(m) for m in response.context["messages"] if "llmp_" in str(m)]
    assert len(shown) == 1
    secret = shown[0].rsplit(": ", 1)[1]
    assert secret.startswith(f"llmp_{api_key.prefix}_")
    assert api_key_hash(secret) == api_key.key_hash
    # the change page afterwards shows the prefix, never the secret
    change = admin_client.get(reverse("admin:accounts_apikey_change", args=[api_key.pk]))
    assert api_key.prefix in change.content.decode()
    assert secret not in change.content.decode()


def test_revoke_action(admin_client, user):
    issued = api_key_create(owner=user, name="to revoke")
    url = reverse("admin:accounts_apikey_changelist")

    admin_client.post(url, {"action": "revoke_keys", "_selected_action": [issued.api_key.pk]})

    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None


def test_mcp_server_secrets_are_masked_in_the_list(admin_client):
    McpServerFactory(
        name="github",
        env={"GITHUB_TOKEN": "ghp_supersecretvalue", "HOME_REF": "${HOME}"},
        headers={"Authorization": "Bearer sk-very-secret"},
    )

    page = admin_client.get(reverse("admin:mcp_servers_mcpserver_changelist")).content.decode()

    assert "ghp_supersecretvalue" not in page
    assert "sk-very-secret" not in page
    assert "GITHUB_TOKEN=••••" in page
    assert "HOME_REF=${HOME}" in page


def test_mcp_server_form_rejects_a_bad_config(admin_client):
    url = reverse("admin:mcp_servers_mcpserver_add")

    response = admin_client.post(
        url,
        {
            "name": "bad__name",
            "transport": "stdio",
            "command": "",
            "args": "{}",
            "env": "[]",
            "headers": "{}",
            "tool_allowlist": "[]",
            "timeout_seconds": 30,
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) >= {"name", "args", "env"}
