from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from pydantic import ValidationError as PydanticValidationError

from providers.types import GenerationOptions

from .models import Chat, Message, ModelAlias, ToolApproval, ToolExecution


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
    fields = ("server", "tool", "arguments", "result", "is_error", "duration_ms", "approval_decision", "created_at")
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
    list_display = (
        "__str__",
        "server",
        "tool",
        "is_error",
        "duration_ms",
        "approval_policy",
        "approval_decision",
        "approval_auto",
        "approval_by",
        "created_at",
    )
    list_filter = ("server", "is_error", "approval_decision", "approval_auto", "created_at")
    list_select_related = ("approval_by",)
    search_fields = ("server", "tool", "tool_call_id")
    raw_id_fields = ("message", "approval_by")


@admin.register(ToolApproval)
class ToolApprovalAdmin(admin.ModelAdmin):
    """Tool calls that asked for a person's yes: who decided what, and when. A record, not editable here."""

    list_display = ("__str__", "chat", "status", "decided_by", "decided_at", "expires_at", "created_at")
    list_filter = ("status", "server", "created_at")
    search_fields = ("server", "tool", "tool_call_id", "chat__title", "chat__owner__username")
    list_select_related = ("chat", "decided_by")
    readonly_fields = tuple(field.name for field in ToolApproval._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolApproval | None = None) -> bool:
        return False


class ModelAliasForm(forms.ModelForm):
    class Meta:
        model = ModelAlias
        fields = ("name", "description", "provider", "model", "system_prompt", "mcp_servers", "options", "enabled")

    def clean_options(self) -> dict[str, Any]:
        """Only GenerationOptions fields, each of its type: a typo would otherwise be a silent no-op."""
        options = self.cleaned_data.get("options") or {}
        if not isinstance(options, dict):
            raise forms.ValidationError('A JSON object of generation options, e.g. {"temperature": 0.2}.')
        unknown = sorted(set(options) - set(GenerationOptions.model_fields))
        if unknown:
            known = ", ".join(GenerationOptions.model_fields)
            raise forms.ValidationError(f"Unknown option(s): {', '.join(unknown)}. Known: {known}.")
        try:
            GenerationOptions.model_validate(options)
        except PydanticValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise forms.ValidationError(f"Invalid option(s): {problems}.") from None
        return options


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    """The model names /v1 offers beside provider/model: a model with a prompt, MCP tools and defaults."""

    form = ModelAliasForm
    list_display = ("name", "provider", "model", "system_prompt", "enabled", "updated_at")
    list_filter = ("enabled", "provider")
    search_fields = ("name", "description", "model")
    list_select_related = ("provider", "system_prompt")
    filter_horizontal = ("mcp_servers",)
    autocomplete_fields = ("system_prompt",)
