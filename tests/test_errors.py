"""Every API error has one shape, {"error": {"code", "message", "details"}}, with the right status."""

import pytest
from rest_framework.test import APIClient

from chats.models import Chat

pytestmark = pytest.mark.django_db


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def test_unknown_api_path_is_404(api):
    response = api.get("/api/does-not-exist")

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_wrong_method_is_405(api):
    response = api.put("/api/me", {}, format="json")

    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_validation_error_is_400_with_field_details(api):
    response = api.post("/api/chats", {"title": "x" * 201}, format="json")

    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid"
    assert error["message"].startswith("title:")
    assert "title" in error["details"]


def test_malformed_json_is_400_and_nothing_is_stored(api):
    response = api.generic("POST", "/api/chats", '{"title": "unterminated', content_type="application/json")

    assert response.status_code == 400
    assert _error(response)["code"] == "parse_error"
    assert Chat.objects.count() == 0


def test_non_json_body_is_415(api):
    response = api.generic("POST", "/api/chats", "title=x", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert _error(response)["code"] == "unsupported_media_type"


def test_oversized_body_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"title": "' + "x" * 2000 + '"}'

    response = api.generic("POST", "/api/chats", body, content_type="application/json")

    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"
    assert Chat.objects.count() == 0


def test_unauthenticated_is_401_everywhere():
    client = APIClient()
    for path in ("/api/me", "/api/keys", "/api/prompts", "/api/chats", "/api/usage"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert _error(response)["code"] == "not_authenticated"


def test_invalid_page_is_404(api):
    response = api.get("/api/chats?page=99")

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"
