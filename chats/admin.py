from django.contrib import admin

from .models import Chat, Message, ToolExecution


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("position", "role", "content", "provider", "model", "input_tokens", "output_tokens", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
    list_display = ("__str__", "owner", "provider", "model", "system_prompt", "created_at", "updated_at")
    list_filter = ("provider", "created_at")
    search_fields = ("title", "owner__username", "model")
    list_select_related = ("owner", "provider", "system_prompt")
    autocomplete_fields = ("owner",)
    filter_horizontal = ("mcp_servers",)
    inlines = (MessageInline,)


class ToolExecutionInline(admin.TabularInline):
    model = ToolExecution
    extra = 0
    fields = ("server", "tool", "arguments", "result", "is_error", "duration_ms", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("__str__", "chat", "role", "provider", "model", "input_tokens", "output_tokens", "created_at")
    list_filter = ("role", "provider", "created_at")
    search_fields = ("chat__title", "model")
    list_select_related = ("chat",)
    raw_id_fields = ("chat",)
    # History is a record: what the model saw and said stays as it was (and is cached parsed, per process).
    readonly_fields = (
        "chat",
        "position",
        "role",
        "content",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "finish_reason",
        "created_at",
    )
    inlines = (ToolExecutionInline,)


@admin.register(ToolExecution)
class ToolExecutionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "server", "tool", "is_error", "duration_ms", "created_at")
    list_filter = ("server", "is_error", "created_at")
    search_fields = ("server", "tool", "tool_call_id")
    raw_id_fields = ("message",)
