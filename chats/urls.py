from django.urls import path

from . import apis

urlpatterns = [
    path("chats", apis.ChatListCreateApi.as_view(), name="chats"),
    path("chats/<int:chat_id>", apis.ChatDetailApi.as_view(), name="chat-detail"),
    path("chats/<int:chat_id>/messages", apis.ChatMessagesApi.as_view(), name="chat-messages"),
    path("chats/<int:chat_id>/cancel", apis.ChatCancelApi.as_view(), name="chat-cancel"),
    path("chats/<int:chat_id>/approvals", apis.ChatApprovalListApi.as_view(), name="chat-approvals"),
    path(
        "chats/<int:chat_id>/approvals/<str:approval_id>",
        apis.ChatApprovalDecideApi.as_view(),
        name="chat-approval-decide",
    ),
    path(
        "chats/<int:chat_id>/elicitations/<str:elicitation_id>",
        apis.ChatElicitationAnswerApi.as_view(),
        name="chat-elicitation-answer",
    ),
    path("chat", apis.ChatOneShotApi.as_view(), name="chat-one-shot"),
]
