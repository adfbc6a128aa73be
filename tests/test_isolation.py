"""Every object endpoint is scoped to its owner: another user's object is a 404 and never listed."""

import pytest

from accounts.services import api_key_create

from .factories import ChatFactory, MessageFactory, PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_objects(user):
    chat = ChatFactory(owner=user, title="alice's secret plan")
    MessageFactory(chat=chat, position=0)
    prompt = PromptFactory(owner=user, name="alice private", visibility="private")
    key = api_key_create(owner=user, name="alice key").api_key
    return {"chat": chat, "prompt": prompt, "key": key}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/chats/{chat}"),
        ("patch", "/api/chats/{chat}"),
        ("delete", "/api/chats/{chat}"),
        ("get", "/api/chats/{chat}/messages"),
        ("get", "/api/prompts/{prompt}"),
        ("patch", "/api/prompts/{prompt}"),
        ("delete", "/api/prompts/{prompt}"),
        ("delete", "/api/keys/{key}"),
    ],
)
def test_other_users_object_is_404(other_api, alices_objects, method, path):
    url = path.format(**{name: obj.pk for name, obj in alices_objects.items()})

    response = getattr(other_api, method)(url, {"title": "hijacked", "name": "hijacked"}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_other_users_objects_survive_attempts(other_api, alices_objects):
    other_api.delete(f"/api/chats/{alices_objects['chat'].pk}")
    other_api.delete(f"/api/prompts/{alices_objects['prompt'].pk}")
    other_api.delete(f"/api/keys/{alices_objects['key'].pk}")

    alices_objects["chat"].refresh_from_db()
    alices_objects["prompt"].refresh_from_db()
    alices_objects["key"].refresh_from_db()
    assert alices_objects["chat"].title == "alice's secret plan"
    assert alices_objects["key"].revoked_at is None


@pytest.mark.parametrize(("path", "kind"), [("/api/chats", "chat"), ("/api/prompts", "prompt"), ("/api/keys", "key")])
def test_lists_never_show_other_users_objects(api, other_api, alices_objects, path, kind):
    response = other_api.get(path)

    assert response.status_code == 200
    ids = {item["id"] for item in response.json()["results"]}
    assert alices_objects[kind].pk not in ids
    assert alices_objects[kind].pk in {item["id"] for item in api.get(path).json()["results"]}


def test_owner_sees_own_objects(api, alices_objects):
    assert api.get(f"/api/chats/{alices_objects['chat'].pk}").status_code == 200
    assert api.get(f"/api/chats/{alices_objects['chat'].pk}/messages").json()["count"] == 1
    assert api.get(f"/api/prompts/{alices_objects['prompt'].pk}").status_code == 200
