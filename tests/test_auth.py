"""API-key authentication: Bearer and X-API-Key, and every way a key can be bad."""

from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_bearer_key_authenticates(user):
    issued = api_key_create(owner=user, name="cli")

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_x_api_key_header_authenticates(user):
    issued = api_key_create(owner=user, name="cli")

    response = APIClient().get("/api/me", HTTP_X_API_KEY=issued.secret)

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_missing_key_is_401_with_bearer_challenge():
    response = APIClient().get("/api/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    ["Bearer llmp_000000000000_wrongsecret", "Bearer not-a-key-at-all", "Bearer llmp__"],
)
def test_wrong_key_is_401(user, header):
    api_key_create(owner=user, name="real one")

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"] == {"code": "invalid_api_key", "message": "Invalid API key.", "details": None}


def test_right_prefix_wrong_secret_is_401(user):
    issued = api_key_create(owner=user, name="cli")
    tampered = issued.secret[:-4] + ("AAAA" if not issued.secret.endswith("AAAA") else "BBBB")

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {tampered}")

    assert response.status_code == 401


def test_revoked_key_is_401(user):
    issued = api_key_create(owner=user, name="cli")
    api_key_revoke(api_key=issued.api_key)

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_expired_key_is_401(user):
    issued = api_key_create(owner=user, name="cli", expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"


def test_key_of_inactive_user_is_401(user):
    issued = api_key_create(owner=user, name="cli")
    user.is_active = False
    user.save(update_fields=["is_active"])

    response = APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "user_inactive"


def test_secret_is_not_stored_anywhere_in_the_database(user):
    # given a key created through the API, so every code path that could store it runs
    first = api_key_create(owner=user, name="bootstrap")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first.secret}")
    created = client.post("/api/keys", {"name": "second"}, format="json").json()
    client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {created['key']}")

    # when every row of every table is read back as text
    dumped = []
    for model in apps.get_models():
        dumped.extend(str(row) for row in model.objects.values_list())
    everything = "\n".join(dumped)

    # then neither secret, nor the secret part after the prefix, is there
    for secret in (first.secret, created["key"]):
        assert secret not in everything
        assert secret.split("_", 2)[2] not in everything
    assert created["prefix"] in everything


def test_last_used_at_is_written_once_per_minute_not_per_request(user):
    issued = api_key_create(owner=user, name="cli")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get("/api/me").status_code == 200

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE") and "api" in q["sql"]]
    assert len(updates) == 1
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None


def test_keys_endpoint_creates_lists_and_revokes(api, user):
    created = api.post("/api/keys", {"name": "laptop"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(f"llmp_{body['prefix']}_")
    assert body["is_active"] is True

    listed = api.get("/api/keys").json()
    assert {item["name"] for item in listed["results"]} == {"test", "laptop"}
    assert all("key" not in item for item in listed["results"])

    assert api.delete(f"/api/keys/{body['id']}").status_code == 204
    assert APIClient().get("/api/me", HTTP_AUTHORIZATION=f"Bearer {body['key']}").status_code == 401
    assert ApiKey.objects.get(pk=body["id"]).revoked_at is not None


def test_key_with_past_expiry_is_rejected(api):
    response = api.post("/api/keys", {"name": "old", "expires_at": "2001-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert ApiKey.objects.filter(name="old").count() == 0
