"""WebSocket routes of the chats app."""

from typing import Any

from django.urls import path

from .consumers import ChatConsumer

# Channels routes consumers with Django's path(), as its docs show; the stubs disagree on both ends
# (django-stubs' path() takes views only, types-channels' URLRouter wants its own pattern type).
websocket_urlpatterns: list[Any] = [
    path("ws/chats/<int:chat_id>/", ChatConsumer.as_asgi()),  # type: ignore[arg-type]
]
