from django.urls import path

from . import apis

urlpatterns = [
    path("chats", apis.ChatListCreateApi.as_view(), name="chats"),
    path("chats/<int:chat_id>", apis.ChatDetailApi.as_view(), name="chat-detail"),
    path("chats/<int:chat_id>/messages", apis.ChatMessagesApi.as_view(), name="chat-messages"),
    path("chats/<int:chat_id>/cancel", apis.ChatCancelApi.as_view(), name="chat-cancel"),
    path("chat", apis.ChatOneShotApi.as_view(), name="chat-one-shot"),
]
