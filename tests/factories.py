"""factory_boy factories for the platform's models."""

from typing import TYPE_CHECKING, Any, TypeVar

import factory

from accounts.models import User
from chats.models import Chat, Message
from mcp_servers.models import McpServer
from prompts.models import SystemPrompt
from usage.models import UsageRecord

T = TypeVar("T")

if TYPE_CHECKING:
    # ``SomeFactory(...)`` goes through factory_boy's untyped metaclass and returns the model, not the
    # factory: this declares that to the type checker (which otherwise accepts only instances from __new__).
    class ModelFactory(factory.django.DjangoModelFactory[T]):
        def __new__(cls, **kwargs: Any) -> T: ...  # type: ignore[misc]

else:
    ModelFactory = factory.django.DjangoModelFactory


class UserFactory(ModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pass-word-123")


class PromptFactory(ModelFactory[SystemPrompt]):
    class Meta:
        model = SystemPrompt

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"prompt {n}")
    content = "You are a helpful assistant for {{team}}."
    visibility = "private"


class ChatFactory(ModelFactory[Chat]):
    class Meta:
        model = Chat

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"chat {n}")


class MessageFactory(ModelFactory[Message]):
    class Meta:
        model = Message

    chat = factory.SubFactory(ChatFactory)
    position = factory.Sequence(lambda n: n)
    role = "user"
    content = factory.LazyFunction(lambda: [{"type": "text", "text": "hello"}])


class McpServerFactory(ModelFactory[McpServer]):
    class Meta:
        model = McpServer

    name = factory.Sequence(lambda n: f"server{n}")
    transport = "stdio"
    command = "mcp-server-time"


class UsageRecordFactory(ModelFactory[UsageRecord]):
    class Meta:
        model = UsageRecord

    user = factory.SubFactory(UserFactory)
    provider = "openai"
    model = "gpt-4o-mini"
    input_tokens = 100
    output_tokens = 20
