from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import SystemPrompt


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "visibility", "description", "updated_at")
    list_filter = ("visibility", "updated_at")
    search_fields = ("name", "description", "content", "owner__username")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}
