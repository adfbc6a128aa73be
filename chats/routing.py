"""WebSocket routes of the chats app (the chat consumer arrives with the browser chat)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
