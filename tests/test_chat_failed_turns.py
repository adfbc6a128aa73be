"""A failed turn is stored (finish_reason error, with its reason) and listed as such; no model ever sees it."""

import pytest

from chats.models import Message
from providers.models import Provider, ProviderModel

from .factories import ChatFactory
from .fakes.wire import Fail, Turn

pytestmark = pytest.mark.django_db


def _turn(api, chat, message):
    return api.post(
        f"/api/chats/{chat.pk}/messages",
        {"message": message, "provider": "openai", "model": "gpt-4o-mini"},
        format="json",
    )


@pytest.fixture
def listed_model(providers):
    # an admin-listed model: the turn does not consult the provider's model list first
    ProviderModel.objects.create(provider=Provider.objects.get(name="openai"), model_id="gpt-4o-mini")


def test_provider_failure_is_stored_as_a_failed_reply_with_its_reason(api, user, providers, listed_model):
    # given a provider that fails every try
    chat = ChatFactory(owner=user)
    providers["openai"].push(Fail(503, "the model is overloaded"), Fail(503, "still overloaded"))

    # when a turn runs
    response = _turn(api, chat, "Hello")

    # then the failure is a stored assistant row, with no content and the error event's code and message
    assert response.status_code == 503
    failed = Message.objects.get(chat=chat, role="assistant")
    assert failed.content == []
    assert failed.finish_reason == "error"
    assert failed.error_code == "provider_unavailable" == response.json()["error"]["code"]
    assert failed.error_message == response.json()["error"]["message"]
    assert "overloaded" in failed.error_message
    listed = api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    assert [(m["role"], m["finish_reason"], m["error_code"]) for m in listed] == [
        ("user", "", ""),
        ("assistant", "error", "provider_unavailable"),
    ]
    assert listed[1]["error_message"] == failed.error_message
    assert listed[1]["content"] == []
    assert listed[1]["cost"] == "0.00000000"


def test_a_failed_reply_is_never_sent_to_the_model(api, user, providers, listed_model):
    # given a chat whose first reply failed
    chat = ChatFactory(owner=user)
    providers["openai"].push(Fail(503), Fail(503))
    assert _turn(api, chat, "First try").status_code == 503

    # when the user asks again
    providers["openai"].push(Turn(text="Here now."))
    response = _turn(api, chat, "Second try")

    # then the model sees both user messages and nothing of the failed reply
    assert response.status_code == 200, response.content
    sent = providers["openai"].requests_to("/chat/completions")[-1].json["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [("user", "First try"), ("user", "Second try")]


def test_messages_list_the_cost_of_each_reply(api, user, providers, listed_model):
    chat = ChatFactory(owner=user)
    providers["openai"].push(Turn(text="Hi.", input_tokens=1000, output_tokens=100))

    response = _turn(api, chat, "Hello")

    assert response.status_code == 200, response.content
    listed = api.get(f"/api/chats/{chat.pk}/messages").json()["results"]
    assert [(m["role"], m["cost"], m["error_code"], m["error_message"]) for m in listed] == [
        ("user", "0.00000000", "", ""),
        ("assistant", "0.00021000", "", ""),
    ]
    assert response.json()["usage"]["cost"] == listed[1]["cost"]
