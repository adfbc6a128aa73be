"""The chat page for browser users (everything else it needs comes from the REST API and the WebSocket)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "chats/chat.html")
