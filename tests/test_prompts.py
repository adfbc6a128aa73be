"""The prompt library: own and shared prompts are visible; only the owner edits."""

import pytest

from prompts.models import SystemPrompt

from .factories import PromptFactory

pytestmark = pytest.mark.django_db


def test_list_shows_own_and_shared_prompts_only(api, user, other_user):
    own = PromptFactory(owner=user, name="mine")
    shared = PromptFactory(owner=other_user, name="team", visibility="shared")
    PromptFactory(owner=other_user, name="bob private", visibility="private")

    results = api.get("/api/prompts").json()["results"]

    assert {item["id"] for item in results} == {own.pk, shared.pk}
    assert {item["name"]: item["is_owner"] for item in results} == {"mine": True, "team": False}


def test_shared_prompt_is_readable_but_not_editable_by_others(api, other_user):
    shared = PromptFactory(owner=other_user, name="team", content="original", visibility="shared")

    assert api.get(f"/api/prompts/{shared.pk}").json()["content"] == "original"
    patched = api.patch(f"/api/prompts/{shared.pk}", {"content": "changed"}, format="json")
    deleted = api.delete(f"/api/prompts/{shared.pk}")

    assert patched.status_code == 403
    assert patched.json()["error"]["code"] == "permission_denied"
    assert deleted.status_code == 403
    shared.refresh_from_db()
    assert shared.content == "original"


def test_owner_creates_updates_and_deletes(api, user):
    created = api.post(
        "/api/prompts", {"name": "reviewer", "content": "Review {{lang}} code.", "visibility": "shared"}, format="json"
    )
    assert created.status_code == 201
    prompt_id = created.json()["id"]

    patched = api.patch(f"/api/prompts/{prompt_id}", {"description": "code review"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["description"] == "code review"
    assert patched.json()["content"] == "Review {{lang}} code."

    assert api.delete(f"/api/prompts/{prompt_id}").status_code == 204
    assert not SystemPrompt.objects.filter(pk=prompt_id).exists()


def test_duplicate_name_is_409_and_keeps_the_original(api, user):
    PromptFactory(owner=user, name="reviewer", content="first")

    response = api.post("/api/prompts", {"name": "reviewer", "content": "second"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_name"
    assert SystemPrompt.objects.get(owner=user, name="reviewer").content == "first"


def test_invalid_visibility_is_400(api):
    response = api.post("/api/prompts", {"name": "x", "content": "y", "visibility": "public"}, format="json")

    assert response.status_code == 400
    assert "visibility" in response.json()["error"]["details"]
