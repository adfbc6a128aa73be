from django.contrib import admin

from .models import SystemPrompt


@admin.register(SystemPrompt)
class SystemPromptAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "visibility", "description", "updated_at")
    list_filter = ("visibility", "updated_at")
    search_fields = ("name", "description", "content", "owner__username")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)

    def get_changeform_initial_data(self, request):  # type: ignore[no-untyped-def]
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}
