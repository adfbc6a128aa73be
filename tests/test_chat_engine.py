"""The chat engine end to end: REST turns against the real provider SDKs (local wire servers) and real
MCP servers, with everything stored as it happens."""

import shutil
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats.models import Chat, Message
from providers.models import Provider, ProviderModel
from usage.models import UsageRecord

from .conftest import client_for, wait_until
from .factories import ChatFactory, PromptFactory
from .fakes.providers import MODELS
from .fakes.wire import Fail, Turn

NPX = shutil.which("npx")


def _turn(api, chat, message="Hello", **body):
    return api.post(f"/api/chats/{chat.pk}/messages", {"message": message, **body}, format="json")


def _roles(chat):
    return list(Message.objects.filter(chat=chat).order_by("position").values_list("role", flat=True))


# --- without tools (plain django_db: everything runs in the test's transaction) -----------------


@pytest.mark.django_db
def test_plain_turn_stores_messages_usage_and_title(api, user, providers):
    chat = ChatFactory(owner=user, title="")
    providers["openai"].push(Turn(text="Hi there, how can I help?", input_tokens=1000, output_tokens=100))

    response = _turn(api, chat, "Hello, please introduce yourself briefly", provider="openai", model="gpt-4o-mini")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == "Hi there, how can I help?"
    assert body["success"] is True
    assert body["finish_reason"] == "end"
    assert body["tool_executions"] == []
    assert body["usage"] == {"input_tokens": 1000, "output_tokens": 100, "cost": "0.00021000"}
    chat.refresh_from_db()
    assert chat.title == "Hello, please introduce yourself briefly"
    assert _roles(chat) == ["user", "assistant"]
    assistant = Message.objects.get(pk=body["message_id"])
    assert assistant.content == [{"type": "text", "text": "Hi there, how can I help?"}]
    assert (assistant.provider, assistant.model, assistant.finish_reason) == ("openai", "gpt-4o-mini", "end")
    record = UsageRecord.objects.get()
    assert (record.user, record.chat, record.provider, record.model) == (user, chat, "openai", "gpt-4o-mini")
    assert (record.input_tokens, record.output_tokens, record.cost) == (1000, 100, Decimal("0.00021"))
    assert record.api_key is not None


@pytest.mark.django_db
def test_system_prompt_variables_are_filled(api, user, providers):
    prompt = PromptFactory(owner=user, content="You help {{team}} with {{ topic }}.")
    chat = ChatFactory(owner=user)

    response = _turn(
        api,
        chat,
        provider="anthropic",
        model=MODELS["anthropic"],
        system_prompt_id=prompt.pk,
        variables={"team": "the data team", "topic": "SQL"},
    )

    assert response.status_code == 200
    assert providers["anthropic"].requests_to("/v1/messages")[-1].json["system"] == "You help the data team with SQL."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"message": ""}, 400, "empty_message"),
        ({"message": "   "}, 400, "empty_message"),
        ({"message": "x" * 100_001}, 400, "message_too_long"),
        ({"message": "hi", "provider": "nope"}, 400, "unknown_provider"),
        ({"message": "hi", "provider": "openai", "model": "no-such-model"}, 400, "unknown_model"),
        ({"message": "hi", "provider": "openai", "model": ""}, 400, "no_model"),
        (
            {"message": "hi", "provider": "openai", "model": "gpt-4o-mini", "mcp_servers": ["ghost"]},
            400,
            "unknown_mcp_server",
        ),
        (
            {"message": "hi", "provider": "openai", "model": "gpt-4o-mini", "variables": {"x": "1"}},
            400,
            "invalid_variables",
        ),
        ({"provider": "openai"}, 400, "invalid"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(api, user, providers, body, status, code):
    chat = ChatFactory(owner=user)

    response = api.post(f"/api/chats/{chat.pk}/messages", body, format="json")

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Message.objects.count() == 0
    assert providers["openai"].requests_to("/chat/completions") == []


@pytest.mark.django_db
def test_unconfigured_provider_and_other_users_chat(api, user, other_user, providers, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    mine = ChatFactory(owner=user)
    theirs = ChatFactory(owner=other_user)

    unconfigured = _turn(api, mine, provider="gemini", model=MODELS["gemini"])
    foreign = _turn(api, theirs, provider="openai", model="gpt-4o-mini")
    malformed = api.generic("POST", f"/api/chats/{theirs.pk}/messages", "{nope", content_type="application/json")

    assert unconfigured.status_code == 400
    assert unconfigured.json()["error"]["code"] == "provider_not_configured"
    assert foreign.status_code == 404
    assert malformed.status_code == 400
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_turn_rejected_by_rate_limit_and_budget_before_any_provider_call(api, user, providers, settings):
    chat = ChatFactory(owner=user)
    user.monthly_budget_usd = Decimal("0.01")
    user.save(update_fields=["monthly_budget_usd"])
    UsageRecord.objects.create(user=user, provider="openai", model="gpt-4o", cost=Decimal("0.02"))

    over_budget = _turn(api, chat, provider="openai", model="gpt-4o-mini")

    assert over_budget.status_code == 429
    assert over_budget.json()["error"]["code"] == "budget_exceeded"
    assert int(over_budget["Retry-After"]) > 0
    user.monthly_budget_usd = None
    user.tokens_per_minute = 50
    user.save(update_fields=["monthly_budget_usd", "tokens_per_minute"])
    providers["openai"].push(Turn(text="first", input_tokens=40, output_tokens=20))
    assert _turn(api, chat, provider="openai", model="gpt-4o-mini").status_code == 200

    over_tokens = _turn(api, chat, provider="openai", model="gpt-4o-mini")

    assert over_tokens.status_code == 429
    assert over_tokens.json()["error"]["code"] == "token_limit"
    assert len(providers["openai"].requests_to("/chat/completions")) == 1
    assert _roles(chat) == ["user", "assistant"]


@pytest.mark.django_db
def test_turns_count_against_the_request_rate(user, providers, settings):
    settings.RATE_LIMIT_PER_MINUTE = 1
    client = client_for(user)
    chat = ChatFactory(owner=user)
    providers["openai"].push(Turn(text="ok"))

    first = _turn(client, chat, provider="openai", model="gpt-4o-mini")
    second = _turn(client, chat, provider="openai", model="gpt-4o-mini")

    assert first.status_code == 200
    assert second.status_code == 429
    assert "Retry-After" in second


@pytest.mark.django_db
def test_provider_failure_keeps_history_and_ends_cleanly(api, user, providers):
    chat = ChatFactory(owner=user)
    # an admin-listed model: the turn does not consult the provider's model list first
    ProviderModel.objects.create(provider=Provider.objects.get(name="openai"), model_id="gpt-4o-mini")
    providers["openai"].push(Fail(500, "the model is on fire"), Fail(500, "still on fire"))

    response = _turn(api, chat, provider="openai", model="gpt-4o-mini")

    assert response.status_code == 503
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "provider_unavailable"
    assert "on fire" in body["error"]["message"]
    assert _roles(chat) == ["user", "assistant"]  # the user's message is never lost; the failure is stored


@pytest.mark.django_db
def test_one_shot_form_creates_the_chat(api, user, providers):
    providers["ollama"].push(Turn(text="Bonjour!"))

    first = api.post(
        "/api/chat", {"message": "Say hello in French", "provider": "ollama", "model": "llama3.2"}, format="json"
    )
    chat_id = first.json()["chat_id"]
    providers["ollama"].push(Turn(text="Au revoir!"))
    second = api.post(
        "/api/chat",
        {"message": "And goodbye?", "provider": "ollama", "model": "llama3.2", "chat_id": chat_id},
        format="json",
    )

    assert first.status_code == 200
    assert first.json()["response"] == "Bonjour!"
    assert second.json()["chat_id"] == chat_id
    assert second.json()["response"] == "Au revoir!"
    chat = Chat.objects.get(pk=chat_id)
    assert chat.owner == user
    assert chat.title == "Say hello in French"
    assert _roles(chat) == ["user", "assistant", "user", "assistant"]
    # the second request carried the whole history
    assert [m["content"] for m in providers["ollama"].requests_to("/api/chat")[-1].json["messages"]] == [
        "Say hello in French",
        "Bonjour!",
        "And goodbye?",
    ]


@pytest.mark.django_db
def test_rejected_one_shot_creates_no_chat(api, providers):
    response = api.post("/api/chat", {"message": "", "provider": "ollama", "model": "llama3.2"}, format="json")

    assert response.status_code == 400
    assert Chat.objects.count() == 0


@pytest.mark.django_db
def test_query_count_does_not_grow_with_history(api, user, providers):
    def count(chat) -> int:
        providers["openai"].push(Turn(text="ok"))
        with CaptureQueriesContext(connection) as queries:
            assert _turn(api, chat, provider="openai", model="gpt-4o-mini").status_code == 200
        return len(queries.captured_queries)

    def with_history(length: int) -> Chat:
        chat = ChatFactory(owner=user)
        Message.objects.bulk_create(
            Message(
                chat=chat,
                position=position,
                role="user" if position % 2 == 0 else "assistant",
                content=[{"type": "text", "text": f"message {position}"}],
            )
            for position in range(length)
        )
        return chat

    short, long = with_history(2), with_history(40)
    count(ChatFactory(owner=user))  # the first turn reads the key, provider and model rows kept per process

    # PostgreSQL: the chat and its servers 2; one statement takes the chat, stores the user message and reads
    # the history's keys 1; the content this process has not parsed yet 1; one statement stores the assistant
    # message and its usage and frees the chat 1.
    # SQLite, the same steps as transactions (savepoints inside the test's): 2; take the chat, read the keys
    # and the content, store the user message (in a savepoint of its own) 8; store and free 5.
    expected = {"postgresql": 5, "sqlite": 15}[connection.vendor]
    assert count(short) == count(long) == expected


@pytest.mark.django_db(transaction=True)
async def test_a_new_chat_is_stored_while_the_model_answers_and_its_events_start_with_it(user, providers, monkeypatch):
    from asgiref.sync import sync_to_async

    from chats.services.turns import TurnRequest, turn_prepare, turn_start
    from chats.services.turns.history import TurnStore

    # given a chat insert that only begins once the model has been asked
    real_start = TurnStore.start
    asked_before_the_insert = []

    def start_after_the_request(self):
        asked_before_the_insert.append(
            bool(wait_until(lambda: providers["openai"].requests_to("/chat/completions"), seconds=5))
        )
        return real_start(self)

    monkeypatch.setattr(TurnStore, "start", start_after_the_request)
    providers["openai"].push(Turn(text="Hello back"))

    # when a turn creates its chat
    prepared = await turn_prepare(
        user=user, chat_id=None, request=TurnRequest(message="Hi", provider="openai", model=MODELS["openai"])
    )
    events = await (await turn_start(prepared)).result()

    # then turn_started still comes first, naming the stored chat and user message, and the reply follows it
    kinds = [event.type for event in events]
    assert (kinds[0], kinds[-1]) == ("turn_started", "turn_done")
    assert kinds.index("text_delta") > 0
    assert asked_before_the_insert == [True]  # the model was asked while the insert waited
    started = events[0]
    rows = await sync_to_async(
        lambda: list(Message.objects.filter(chat_id=started.chat_id).order_by("position").values_list("id", "role"))
    )()
    assert [role for _, role in rows] == ["user", "assistant"]
    assert rows[0][0] == started.user_message_id
    assert events[-1].chat_id == started.chat_id
    assert events[-1].success


@pytest.mark.django_db
def test_a_new_chat_that_cannot_be_stored_is_a_clear_503_and_leaves_nothing(api, user, providers, monkeypatch):
    from django.db import OperationalError

    from chats.services.turns.history import TurnStore

    def broken(self):
        raise OperationalError("connection lost")

    monkeypatch.setattr(TurnStore, "start", broken)
    providers["openai"].push(Turn(text="never stored"))

    response = api.post("/api/chat", {"message": "Hi", "provider": "openai", "model": MODELS["openai"]}, format="json")

    assert response.status_code == 503
    body = response.json()
    assert (body["success"], body["error"]["code"], body["chat_id"]) == (False, "storage_failed", None)
    assert body["response"] == "never stored"  # the client has the text; nothing claims it was kept
    assert Chat.objects.count() == 0
    assert Message.objects.count() == 0
