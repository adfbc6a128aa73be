from django.contrib import admin

from .models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost",
        "latency_ms",
    )
    list_filter = ("provider", "model", "created_at")
    search_fields = ("user__username", "provider", "model")
    list_select_related = ("user",)
    raw_id_fields = ("user", "api_key", "chat")
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # append-only
