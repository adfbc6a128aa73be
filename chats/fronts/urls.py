"""/v1: the OpenAI- and Anthropic-compatible API (see chats.fronts)."""

from django.urls import path, re_path

from . import anthropic, catalog, openai

urlpatterns: list = [
    path("models", catalog.model_list, name="v1-models"),
    path("models/<path:model_id>", catalog.model_detail, name="v1-model"),
    path("chat/completions", openai.chat_completions, name="v1-chat-completions"),
    path("messages", anthropic.messages, name="v1-messages"),
    path("messages/count_tokens", anthropic.count_tokens, name="v1-messages-count-tokens"),
    # Keep last: any other path under /v1 is a 404 in the client's error shape.
    re_path(r"^(?P<path>.*)$", catalog.not_found, name="v1-not-found"),
]
