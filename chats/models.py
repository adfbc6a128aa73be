"""Chats and their provider-neutral history.

A message's content is a list of typed blocks (``text``, ``tool_call``,
``tool_result``, ``thinking``) so any provider can replay any other's turns.
Provider and model are stored as names on messages: history outlives config rows.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


class Chat(models.Model):
    # Indexed by chat_owner_updated (owner first), so no index of its own: one index less to write per turn.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chats", db_index=False)
    title = models.CharField(max_length=200, blank=True)
    provider = models.ForeignKey(
        "providers.Provider", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=200, blank=True)
    system_prompt = models.ForeignKey(
        "prompts.SystemPrompt", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    mcp_servers = models.ManyToManyField(
        "mcp_servers.McpServer", blank=True, related_name="+", help_text="Empty: all enabled servers."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The running turn, if any: one at a time per chat, held here so every worker sees it. The lease is
    # renewed while the turn runs; a turn whose worker died frees the chat when its lease runs out.
    turn_id = models.CharField(max_length=32, blank=True, editable=False)
    turn_owner = models.CharField(max_length=200, blank=True, editable=False, help_text="Channel of its worker.")
    turn_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # "server__tool" names a user approved with "remember": allowed without asking for the rest of this chat.
    approved_tools = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="chat_owner_updated")]

    def __str__(self) -> str:
        return self.title or f"Chat {self.pk}"


class Role(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    TOOL = "tool", "Tool"


class Message(models.Model):
    # Indexed by the (chat, position) unique constraint.
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages", db_index=False)
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.JSONField(default=list, help_text="List of content blocks.")
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # Why an assistant message ended: end, tool_calls, length, refused, or error / cancelled / round_limit
    # for a turn cut short (its text is then partial).
    finish_reason = models.CharField(max_length=20, blank=True)
    # What the assistant message cost (its UsageRecord's), so a reloaded chat shows what the live one did.
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    # A turn that failed: why (the error event's code and message), shown after a reload as it was live.
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["chat", "position"]
        constraints = [
            models.UniqueConstraint(fields=["chat", "position"], name="message_position_unique_per_chat"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="message_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.position} in chat {self.chat_id}"


class ApprovalDecision(models.TextChoices):
    APPROVED = "approved", "approved"
    DENIED = "denied", "denied"
    EXPIRED = "expired", "expired (nobody decided in time)"
    CANCELLED = "cancelled", "cancelled (the turn stopped first)"


class ToolExecution(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_executions")
    tool_call_id = models.CharField(max_length=200, blank=True)
    round = models.PositiveSmallIntegerField(default=1)
    server = models.CharField(max_length=40)
    tool = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    result = models.JSONField(default=list, help_text="Result content blocks.")
    is_error = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    # Whether the call ran: the policy that applied, and the decision, by a human or automatically.
    approval_policy = models.CharField(max_length=5, blank=True)
    approval_decision = models.CharField(max_length=10, choices=ApprovalDecision.choices, blank=True)
    approval_auto = models.BooleanField(default=True, help_text="Decided by policy, not by a person.")
    approval_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    approval_at = models.DateTimeField(null=True, blank=True)
    # What the server asked of the host during the call: sampling requests and results, elicitations and
    # their answers, in order ([{"kind": "sampling" | "elicitation", ...}]).
    interactions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "id"]

    def __str__(self) -> str:
        return f"{self.server}__{self.tool}"


class ToolApproval(models.Model):
    """A tool call waiting for a human's yes or no (policy ``ask``), and then what they decided.

    The turn that asked waits in its worker; the row lets any worker take the decision, and a reloaded page
    show the question again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        DENIED = "denied", "denied"
        EXPIRED = "expired", "expired"
        CANCELLED = "cancelled", "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="tool_approvals", db_index=False)
    turn_id = models.CharField(max_length=32)
    tool_call_id = models.CharField(max_length=200)
    round = models.PositiveSmallIntegerField(default=1)
    server = models.CharField(max_length=40)
    tool = models.CharField(max_length=200)
    arguments = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    remember = models.BooleanField(default=False, help_text="Approved for the rest of the chat.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["chat", "status"], name="approval_chat_status")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "approved", "denied", "expired", "cancelled"]),
                name="approval_status_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.server}__{self.tool} ({self.status})"


ALIAS_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


class ModelAlias(models.Model):
    """A model name the OpenAI- and Anthropic-compatible API (/v1) offers beside ``provider/model``: a provider
    and model, optionally with a system prompt from the library, the MCP servers whose tools run server-side,
    and generation defaults. A client that knows nothing of MCP picks the alias and gets the tools."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[RegexValidator(ALIAS_NAME_RE, "Letters, digits, '.', '_', ':' and '-'; no '/'.")],
        help_text="What clients put in `model`, e.g. research-assistant.",
    )
    description = models.CharField(max_length=300, blank=True)
    provider = models.ForeignKey("providers.Provider", on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)
    system_prompt = models.ForeignKey(
        "prompts.SystemPrompt", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    mcp_servers = models.ManyToManyField(
        "mcp_servers.McpServer", blank=True, related_name="+", help_text="Their tools run server-side."
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Generation defaults a request may override, e.g. {"temperature": 0.2, "max_tokens": 2048}.',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return self.name
