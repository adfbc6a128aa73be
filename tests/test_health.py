"""Liveness and readiness probes."""

from typing import Any

import pytest
from django.conf import settings
from django.db.utils import ConnectionHandler

from platform_site import health

pytestmark = pytest.mark.django_db


def test_healthz_is_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert ("redis" in body["checks"]) == bool(settings.REDIS_URL)


def _unreachable_database() -> dict:
    db: dict[str, Any] = dict(settings.DATABASES["default"])
    db["OPTIONS"] = {}
    if db["ENGINE"].endswith("postgresql"):
        db.update(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 2})
    else:
        db["NAME"] = "/nonexistent-dir/for-readyz/db.sqlite3"
    return db


def test_readyz_is_503_when_the_database_is_unreachable(client, monkeypatch):
    broken = ConnectionHandler({"default": _unreachable_database()})
    monkeypatch.setattr(health, "connections", broken)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]
    broken.close_all()


def test_readyz_is_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
