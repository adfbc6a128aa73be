"""Tool calls that wait for a human's yes (policy ``ask``), and who decides which calls run at all.

Each call of a round gets a verdict before it runs (``verdict_for``): the admin's policy
(``mcp_servers.policies``), or a tool the user approved "for the rest of this chat". A call that asks
gets a ``ToolApproval`` row, the turn says so (``tool_approval_required``) and that call waits in its
worker while the round's other calls run.

Whoever decides (the WebSocket frame ``approval`` or REST, on any worker) updates the row once: the
first decision wins. Then the waiting call is woken: directly in this process, else over the channel
layer on the turn's process channel (``rules``). The waiting call also re-reads its row every
``TOOL_APPROVAL_POLL_SECONDS``, so a wake-up lost while Redis is away costs seconds, not the decision.
Nobody deciding within ``TOOL_APPROVAL_TIMEOUT_SECONDS`` makes it ``expired``; a cancelled turn makes it
``cancelled``.
"""

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from mcp_servers.interactions import ELICITATION_TOOL
from mcp_servers.models import Policy
from mcp_servers.policies import effective_policy
from mcp_servers.results import ToolInfo
from platform_site.db import run_db
from platform_site.exceptions import Conflict, NotFound, ValidationFailed
from providers.types import ToolCallBlock

from ...events import ToolApprovalRequired
from ...models import ApprovalDecision, Chat, ToolApproval
from .rules import APPROVAL, turn_control_send

logger = logging.getLogger(__name__)

# Calls of this process waiting for a decision: approval id -> (their loop, the event that wakes them).
_waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}


@dataclass(frozen=True)
class Verdict:
    """Whether a call runs, and why: what is stored on its ToolExecution."""

    policy: str  # allow, ask or deny
    decision: str  # an ApprovalDecision
    auto: bool = True  # a policy, a remembered approval or the clock decided, not a person
    by_id: int | None = None
    at: datetime | None = None
    reason: str | None = None  # why it is refused, when the decision alone does not say

    @property
    def refusal(self) -> str | None:
        """The error result the model sees instead of the tool's, or None when the call runs."""
        if self.reason is not None and self.decision != ApprovalDecision.APPROVED:
            return self.reason
        return {
            ApprovalDecision.APPROVED: None,
            ApprovalDecision.DENIED: "The user denied this tool call."
            if self.policy == Policy.ASK
            else "This tool call is denied by the administrator's policy.",
            ApprovalDecision.EXPIRED: "Approval timed out: nobody approved this tool call in time.",
            ApprovalDecision.CANCELLED: "Cancelled by the user before it ran.",
        }[ApprovalDecision(self.decision)]


def verdict_for(
    info: ToolInfo, *, policies: dict[str, tuple[str, dict[str, str]]], remembered: set[str]
) -> Verdict | None:
    """The verdict decided without a person, or None when the call must ask."""
    default, tools = policies.get(info.server, ("", {}))
    policy, _source = effective_policy(tool=info.name, annotations=info.annotations, default=default, tools=tools)
    now = timezone.now()
    if policy == Policy.DENY:
        return Verdict(policy=policy, decision=ApprovalDecision.DENIED, at=now)
    if policy == Policy.ALLOW or info.namespaced_name in remembered:
        return Verdict(policy=policy, decision=ApprovalDecision.APPROVED, at=now)
    return None


# --- the turn's side: ask, then wait -------------------------------------------------------------


def approvals_create(
    *, chat_id: int, turn_id: str, round_number: int, calls: list[tuple[ToolCallBlock, ToolInfo]]
) -> list[ToolApproval]:
    """One pending row per call that asks, in one statement (so they are announced together)."""
    expires_at = timezone.now() + timedelta(seconds=settings.TOOL_APPROVAL_TIMEOUT_SECONDS)
    return ToolApproval.objects.bulk_create(
        ToolApproval(
            chat_id=chat_id,
            turn_id=turn_id,
            tool_call_id=call.id,
            round=round_number,
            server=info.server,
            tool=info.name,
            arguments=call.arguments,
            expires_at=expires_at,
        )
        for call, info in calls
    )


async def approval_wait(approval: ToolApproval) -> tuple[Verdict, bool]:
    """Wait for the decision on ``approval``: the verdict, and whether to remember it for the chat.

    Cancelling the waiting task marks the row ``cancelled`` (unless a decision came first).
    """
    key = str(approval.pk)
    wake = asyncio.Event()
    _waiting[key] = (asyncio.get_running_loop(), wake)
    try:
        while True:
            remaining = (approval.expires_at - timezone.now()).total_seconds()
            if remaining <= 0:
                current = await run_db(_close, approval.pk, ToolApproval.Status.EXPIRED)
                return _verdict(current), current.remember
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(remaining, settings.TOOL_APPROVAL_POLL_SECONDS))
            wake.clear()
            current = await run_db(ToolApproval.objects.get, pk=approval.pk)
            if current.status != ToolApproval.Status.PENDING:
                return _verdict(current), current.remember
    except asyncio.CancelledError:
        await asyncio.shield(run_db(_close, approval.pk, ToolApproval.Status.CANCELLED))
        raise
    finally:
        _waiting.pop(key, None)


def _close(approval_id: uuid.UUID, status: str) -> ToolApproval:
    """Mark a still-pending approval ``status`` (expired, cancelled); return the row as it then stands."""
    ToolApproval.objects.filter(pk=approval_id, status=ToolApproval.Status.PENDING).update(
        status=status, decided_at=timezone.now()
    )
    return ToolApproval.objects.get(pk=approval_id)


def _verdict(approval: ToolApproval) -> Verdict:
    decided_by_person = approval.status in (ToolApproval.Status.APPROVED, ToolApproval.Status.DENIED)
    return Verdict(
        policy=Policy.ASK,
        decision=approval.status,
        auto=not decided_by_person,
        by_id=approval.decided_by_id if decided_by_person else None,
        at=approval.decided_at,
    )


def approval_event(approval: ToolApproval) -> ToolApprovalRequired:
    """The event that asks for ``approval``'s decision (sent when asked, and again to a tab that reconnects)."""
    return ToolApprovalRequired(
        approval_id=str(approval.pk),
        tool_call_id=approval.tool_call_id,
        server=approval.server,
        tool=approval.tool,
        arguments=approval.arguments,
        expires_at=approval.expires_at,
        round=approval.round,
    )


def approval_wake(approval_id: str) -> None:
    """Wake the call of this process waiting on ``approval_id``, if any (from any thread)."""
    waiting = _waiting.get(approval_id)
    if waiting is not None:
        loop, wake = waiting
        loop.call_soon_threadsafe(wake.set)


# --- the deciding side ---------------------------------------------------------------------------


def approval_list(*, chat_id: int, user: User, pending_only: bool = True) -> list[ToolApproval]:
    """A chat's approvals, oldest first; ``pending_only``: those still waiting for a decision."""
    if not Chat.objects.filter(pk=chat_id, owner=user).exists():
        raise NotFound("Chat not found.")
    # Elicitations ride on the same rows (see ``interactions``) but are questions, not approvals.
    approvals = ToolApproval.objects.filter(chat_id=chat_id).exclude(tool=ELICITATION_TOOL)
    if pending_only:
        approvals = approvals.filter(status=ToolApproval.Status.PENDING, expires_at__gt=timezone.now())
    return list(approvals.order_by("created_at", "tool_call_id"))


def pending_row_for_update(*, row_id: str, user: User, chat_id: int | None, elicitation: bool) -> ToolApproval:
    """The still-pending approval (or, with ``elicitation``, question) ``row_id`` in one of ``user``'s chats
    (and in ``chat_id`` when given), locked: call it inside a transaction.

    NotFound when there is no such row; Conflict ``approval_not_pending`` / ``elicitation_not_pending``
    when it was decided, expired or cancelled already.
    """
    noun = "Elicitation" if elicitation else "Approval"
    try:
        key = uuid.UUID(str(row_id))
    except ValueError:
        raise NotFound(f"{noun} not found.") from None
    rows = ToolApproval.objects.select_for_update().filter(pk=key, chat__owner=user)
    # A question is answered with content (see interactions), never approved.
    rows = rows.filter(tool=ELICITATION_TOOL) if elicitation else rows.exclude(tool=ELICITATION_TOOL)
    if chat_id is not None:
        rows = rows.filter(chat_id=chat_id)
    row = rows.first()
    if row is None:
        raise NotFound(f"{noun} not found.")
    status = row.status
    if status == ToolApproval.Status.PENDING and row.expires_at <= timezone.now():
        status = ToolApproval.Status.EXPIRED  # its turn marks it so when it next looks
    if status != ToolApproval.Status.PENDING:
        waiting = (
            "question is no longer waiting for an answer"
            if elicitation
            else "tool call is no longer waiting for a decision"
        )
        raise Conflict(
            f"This {waiting}: it was {status}.",
            code=f"{noun.lower()}_not_pending",
            details={"status": status},
        )
    return row


def approval_decide(
    *, user: User, approval_id: str, approve: bool, remember: bool = False, chat_id: int | None = None
) -> ToolApproval:
    """Record ``user``'s decision (the first one wins); with ``remember``, approve the tool for the chat.

    NotFound for an approval not in one of the user's chats (or not in ``chat_id``); Conflict
    ``approval_not_pending`` when it was decided, expired or cancelled already.
    """
    with transaction.atomic():
        approval = pending_row_for_update(row_id=approval_id, user=user, chat_id=chat_id, elicitation=False)
        approval.status = ToolApproval.Status.APPROVED if approve else ToolApproval.Status.DENIED
        approval.remember = approve and remember
        approval.decided_by = user
        approval.decided_at = timezone.now()
        approval.save(update_fields=["status", "remember", "decided_by", "decided_at"])
        if approval.remember:
            chat = Chat.objects.select_for_update().only("approved_tools").get(pk=approval.chat_id)
            name = f"{approval.server}__{approval.tool}"
            if name not in chat.approved_tools:
                chat.approved_tools = [*chat.approved_tools, name]
                chat.save(update_fields=["approved_tools"])
    return approval


async def approval_submit(
    *, user: User, approval_id: str, approve: bool, remember: bool = False, chat_id: int | None = None
) -> ToolApproval:
    """Decide (see ``approval_decide``), then wake the waiting call wherever its turn runs."""
    approval = await run_db(
        approval_decide, user=user, approval_id=approval_id, approve=approve, remember=remember, chat_id=chat_id
    )
    await approval_notify(approval)
    return approval


async def approval_notify(approval: ToolApproval) -> None:
    """Wake the call waiting on ``approval`` (just decided), in this process or on its turn's worker."""
    key = str(approval.pk)
    if key in _waiting:
        approval_wake(key)
    else:
        owner = await run_db(lambda: Chat.objects.filter(pk=approval.chat_id).values_list("turn_owner", flat=True)[0])
        # Best effort: the waiting call re-reads its row every TOOL_APPROVAL_POLL_SECONDS anyway.
        await turn_control_send(owner, {"type": APPROVAL, "approval_id": key}, required=False)


def parse_decision(data: object) -> tuple[str, bool, bool]:
    """``{"approval_id"?, "decision": "approve" | "deny", "remember"?: "chat" | null}`` -> (id, approve, remember)."""
    if not isinstance(data, dict):
        raise ValidationFailed("Send a JSON object.", code="invalid_decision")
    errors: dict[str, list[str]] = {}
    decision = data.get("decision")
    if decision not in ("approve", "deny"):
        errors["decision"] = ['Must be "approve" or "deny".']
    remember = data.get("remember")
    if remember not in (None, "chat"):
        errors["remember"] = ['Must be "chat" (approve this tool for the rest of the chat) or left out.']
    if errors:
        raise ValidationFailed("The decision is not valid.", code="invalid_decision", details=errors)
    return str(data.get("approval_id", "")), decision == "approve", remember == "chat"
