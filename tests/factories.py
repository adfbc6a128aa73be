"""factory_boy factories for the platform's models."""

import factory

from accounts.models import User
from chats.models import Chat, Message
from mcp_servers.models import McpServer
from prompts.models import SystemPrompt
from usage.models import UsageRecord


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("pass-word-123")


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SystemPrompt

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"prompt {n}")
    content = "You are a helpful assistant for {{team}}."
    visibility = "private"


class ChatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chat

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"chat {n}")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    chat = factory.SubFactory(ChatFactory)
    position = factory.Sequence(lambda n: n)
    role = "user"
    content = factory.LazyFunction(lambda: [{"type": "text", "text": "hello"}])


class McpServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = McpServer

    name = factory.Sequence(lambda n: f"server{n}")
    transport = "stdio"
    command = "mcp-server-time"


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageRecord

    user = factory.SubFactory(UserFactory)
    provider = "openai"
    model = "gpt-4o-mini"
    input_tokens = 100
    output_tokens = 20
