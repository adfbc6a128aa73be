"""Writes of chats: the chat records themselves (chats.py) and turns of conversation (turns/)."""

from .chats import chat_create, chat_delete, chat_update

__all__ = ["chat_create", "chat_delete", "chat_update"]
