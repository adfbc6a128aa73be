"""Chats over REST: create, read, update, delete, and the paginated, ordered history."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats.models import Chat, ToolExecution

from .factories import ChatFactory, McpServerFactory, MessageFactory, PromptFactory

pytestmark = pytest.mark.django_db


def test_create_with_provider_prompt_and_servers(api, user, other_user):
    McpServerFactory(name="time")
    McpServerFactory(name="files")
    prompt = PromptFactory(owner=other_user, visibility="shared")

    response = api.post(
        "/api/chats",
        {
            "title": "Plans",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "system_prompt_id": prompt.pk,
            "mcp_servers": ["time", "files"],
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["provider"] == "anthropic"
    assert body["system_prompt_id"] == prompt.pk
    assert sorted(body["mcp_servers"]) == ["files", "time"]
    assert body["message_count"] == 0
    assert Chat.objects.get(pk=body["id"]).owner == user


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"provider": "nope"}, "unknown_provider"),
        ({"mcp_servers": ["ghost"]}, "unknown_mcp_server"),
        ({"system_prompt_id": 999999}, "unknown_system_prompt"),
    ],
)
def test_create_with_unknown_references_is_400_and_stores_nothing(api, payload, code):
    response = api.post("/api/chats", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Chat.objects.count() == 0


def test_private_prompt_of_another_user_cannot_be_attached(api, other_user):
    prompt = PromptFactory(owner=other_user, visibility="private")

    response = api.post("/api/chats", {"system_prompt_id": prompt.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_system_prompt"


def test_patch_changes_only_given_fields(api, user):
    McpServerFactory(name="time")
    chat = ChatFactory(owner=user, title="Old", model="gpt-4o")

    response = api.patch(f"/api/chats/{chat.pk}", {"title": "New", "mcp_servers": ["time"]}, format="json")

    assert response.status_code == 200
    assert response.json()["title"] == "New"
    assert response.json()["model"] == "gpt-4o"
    assert response.json()["mcp_servers"] == ["time"]


def test_failed_patch_keeps_the_chat_unchanged(api, user):
    chat = ChatFactory(owner=user, title="Keep me")

    response = api.patch(f"/api/chats/{chat.pk}", {"title": "Changed", "provider": "nope"}, format="json")

    assert response.status_code == 400
    chat.refresh_from_db()
    assert chat.title == "Keep me"


def test_delete_removes_chat_and_history(api, user):
    chat = ChatFactory(owner=user)
    MessageFactory(chat=chat, position=0)

    assert api.delete(f"/api/chats/{chat.pk}").status_code == 204
    assert not Chat.objects.filter(pk=chat.pk).exists()


def test_messages_are_ordered_paginated_and_carry_tool_executions(api, user):
    chat = ChatFactory(owner=user)
    for position in (2, 0, 1):
        MessageFactory(chat=chat, position=position, role="assistant" if position == 1 else "user")
    assistant = chat.messages.get(position=1)
    ToolExecution.objects.create(
        message=assistant,
        server="time",
        tool="get_current_time",
        arguments={"timezone": "UTC"},
        result=[{"type": "text", "text": "12:00"}],
    )

    first = api.get(f"/api/chats/{chat.pk}/messages?page_size=2").json()
    second = api.get(f"/api/chats/{chat.pk}/messages?page_size=2&page=2").json()

    assert first["count"] == 3
    assert [m["position"] for m in first["results"]] == [0, 1]
    assert [m["position"] for m in second["results"]] == [2]
    assert first["results"][1]["tool_executions"][0]["tool"] == "get_current_time"


def test_list_endpoints_do_not_grow_queries_with_rows(api, user):
    def count_queries(path: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(path).status_code == 200
        return len(queries.captured_queries)

    McpServerFactory(name="time")
    chat = ChatFactory(owner=user)
    MessageFactory(chat=chat, position=0)
    api.get("/api/me")  # the key's first use writes last_used_at; keep that out of the counts
    few_chats, few_messages = count_queries("/api/chats"), count_queries(f"/api/chats/{chat.pk}/messages")

    for _ in range(5):
        extra = ChatFactory(owner=user)
        extra.mcp_servers.set([McpServerFactory()])
    for position in range(1, 6):
        MessageFactory(chat=chat, position=position)
    many_chats, many_messages = count_queries("/api/chats"), count_queries(f"/api/chats/{chat.pk}/messages")

    assert many_chats == few_chats
    assert many_messages == few_messages
