"""A tool call's server asks the turn for something: a model's answer (sampling) or the user's (elicitation).

``TurnCall`` is the ``mcp_servers.interactions.CallContext`` the engine hands the host with each call. The
host awaits its methods on its own loop; they run on the turn's loop, where the events go out.

- **Sampling** follows the server's ``sampling_policy``: ``ask`` stores a ``ToolApproval`` row with
  ``tool = "sampling/createMessage"`` (the request in ``arguments``) and waits like a tool approval (the
  event ``tool_approval_required``, decided over the frame ``approval`` or REST; "remember" allows it for
  the rest of the chat); ``allow`` runs at once. It runs on the server's sampling provider, else the turn's,
  within the user's limits, and is stored as their ``UsageRecord``.
- **Elicitation** stores a ``ToolApproval`` row with ``tool = "elicitation/create"`` and ``arguments``
  ``{"mode", "message", "requested_schema", "url"?, "elicitation_id"?}``; the answer is written into the
  same row: ``arguments["response"] = {"action", "content"}``, and ``status`` approved (accept), denied
  (decline), cancelled (cancel, or the turn stopped) or expired (nobody answered in
  ``TOOL_APPROVAL_TIMEOUT_SECONDS``: the server gets ``cancel``). Waiting and waking across workers is the
  approvals' own (``approval_wait``, ``approval_notify``).

What was asked and answered is kept in order on the call's ``ToolExecution.interactions``.
"""

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from mcp_servers.elicitation import elicitation_content_validate
from mcp_servers.interactions import (
    ELICITATION_TOOL,
    SAMPLING_TOOL,
    ElicitationAnswer,
    ElicitationRequest,
    InteractionRefused,
    SamplingRequest,
    SamplingResult,
    ServerInteractionSettings,
    sampling_provider,
    sampling_run,
)
from mcp_servers.models import Policy
from platform_site.db import run_db
from platform_site.exceptions import NotFound, ValidationFailed

from ...events import (
    ElicitationRequired,
    ElicitationResolved,
    SamplingRequested,
    SamplingResultEvent,
    ToolApprovalDecided,
)
from ...models import Chat, ToolApproval
from .approvals import approval_event, approval_notify, approval_wait, pending_row_for_update

if TYPE_CHECKING:
    from .loop import TurnHandle

T = TypeVar("T")

ACTIONS = {
    "accept": ToolApproval.Status.APPROVED,
    "decline": ToolApproval.Status.DENIED,
    "cancel": ToolApproval.Status.CANCELLED,
}


class TurnCall:
    """One tool call of a turn, as the host sees it when the call's server asks for something."""

    def __init__(self, handle: "TurnHandle", *, tool_call_id: str, server: str, round_number: int) -> None:
        self.handle = handle
        self.user_id: int = handle.prepared.user.pk
        self.tool_call_id = tool_call_id
        self.server = server
        self.round = round_number
        self.interactions: list[dict[str, Any]] = []  # what ToolExecution.interactions stores
        self._running: set[concurrent.futures.Future[Any]] = set()

    # --- called by the host, on its loop ---------------------------------------------------------

    async def sample(self, request: SamplingRequest, config: ServerInteractionSettings) -> SamplingResult:
        return await self._on_turn_loop(self._sample(request, config))

    async def elicit(self, request: ElicitationRequest, config: ServerInteractionSettings) -> ElicitationAnswer:
        return await self._on_turn_loop(self._elicit(request))

    async def _on_turn_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.handle.loop)
        self._running.add(future)
        try:
            return await asyncio.wrap_future(future)
        finally:
            self._running.discard(future)

    def close(self) -> None:
        """The call ended (or the turn stopped): whatever it still waits for is cancelled."""
        for future in list(self._running):
            future.cancel()

    # --- on the turn's loop ------------------------------------------------------------------------

    async def _sample(self, request: SamplingRequest, config: ServerInteractionSettings) -> SamplingResult:
        handle, p = self.handle, self.handle.prepared
        entry: dict[str, Any] = {"kind": "sampling", "request": request.to_dict()}
        self.interactions.append(entry)
        handle._emit(SamplingRequested(tool_call_id=self.tool_call_id, server=self.server, **request.to_dict()))
        try:
            remembered = f"{self.server}__{SAMPLING_TOOL}" in handle._remembered
            if config.sampling_policy == Policy.ASK and not remembered:
                entry["approval"] = await self._ask(request)
                if entry["approval"]["decision"] != ToolApproval.Status.APPROVED:
                    reason = (
                        "denied by the user" if entry["approval"]["decision"] == "denied" else "not approved in time"
                    )
                    raise InteractionRefused(f"Sampling refused: {reason}.")
            provider, model, price_row = await sampling_provider(config, fallback=(p.provider, p.model, p.price_row))
            run = await sampling_run(
                request=request,
                provider=provider,
                model=model,
                price_row=price_row,
                user=p.user,
                chat_id=handle.chat_id,
                api_key_id=p.api_key.pk if p.api_key else None,
            )
        except InteractionRefused as exc:
            entry["error"] = exc.message
            handle._emit(
                SamplingResultEvent(
                    tool_call_id=self.tool_call_id,
                    server=self.server,
                    model="",
                    text="",
                    stop_reason="error",
                    error=exc.message,
                )
            )
            raise
        result = run.result
        entry["result"] = {
            "provider": run.provider,
            "model": result.model,
            "text": result.text,
            "stop_reason": result.stop_reason,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost": run.cost,
        }
        handle._emit(
            SamplingResultEvent(
                tool_call_id=self.tool_call_id,
                server=self.server,
                model=result.model,
                text=result.text,
                stop_reason=result.stop_reason,
                input_tokens=run.input_tokens,
                output_tokens=run.output_tokens,
                cost=Decimal(run.cost),
            )
        )
        return result

    async def _ask(self, request: SamplingRequest) -> dict[str, Any]:
        """A person approves the sampling request (as a tool approval); what they decided."""
        handle = self.handle
        assert handle.chat_id is not None, "tools run after the chat is stored"
        row = await run_db(
            ToolApproval.objects.create,
            chat_id=handle.chat_id,
            turn_id=handle.turn_id,
            tool_call_id=self.tool_call_id,
            round=self.round,
            server=self.server,
            tool=SAMPLING_TOOL,
            arguments=request.to_dict(),
            expires_at=timezone.now() + timedelta(seconds=settings.TOOL_APPROVAL_TIMEOUT_SECONDS),
        )
        handle._emit(approval_event(row))
        verdict, remember = await approval_wait(row)
        if remember:
            handle._remembered.add(f"{self.server}__{SAMPLING_TOOL}")
        handle._emit(
            ToolApprovalDecided(
                approval_id=str(row.pk),
                tool_call_id=self.tool_call_id,
                decision=verdict.decision,
                auto=verdict.auto,
                remember=remember,
            )
        )
        return {"approval_id": str(row.pk), "decision": verdict.decision, "by": verdict.by_id}

    async def _elicit(self, request: ElicitationRequest) -> ElicitationAnswer:
        handle = self.handle
        assert handle.chat_id is not None, "tools run after the chat is stored"
        asked: dict[str, Any] = {"mode": request.mode, "message": request.message}
        if request.mode == "form":
            asked["requested_schema"] = request.requested_schema
        else:
            asked["url"] = request.url
            if request.elicitation_id:
                asked["elicitation_id"] = request.elicitation_id
        row = await run_db(
            ToolApproval.objects.create,
            chat_id=handle.chat_id,
            turn_id=handle.turn_id,
            tool_call_id=self.tool_call_id,
            round=self.round,
            server=self.server,
            tool=ELICITATION_TOOL,
            arguments=asked,
            expires_at=timezone.now() + timedelta(seconds=settings.TOOL_APPROVAL_TIMEOUT_SECONDS),
        )
        entry: dict[str, Any] = {"kind": "elicitation", "elicitation_id": str(row.pk), **asked}
        self.interactions.append(entry)
        handle._emit(elicitation_event(row))
        try:
            await approval_wait(row)
        except asyncio.CancelledError:
            entry["response"] = {"action": "cancel", "status": ToolApproval.Status.CANCELLED}
            raise
        current = await run_db(ToolApproval.objects.get, pk=row.pk)
        answer = elicitation_answer(current)
        entry["response"] = {"action": answer.action, "status": current.status, "by": current.decided_by_id}
        if answer.content is not None:
            entry["response"]["content"] = answer.content
        handle._emit(
            ElicitationResolved(
                elicitation_id=str(row.pk),
                tool_call_id=self.tool_call_id,
                action=answer.action,
                auto=current.decided_by_id is None,
            )
        )
        return answer


def elicitation_answer(row: ToolApproval) -> ElicitationAnswer:
    """What the server is told for a decided elicitation row (expired or cancelled: ``cancel``)."""
    response = row.arguments.get("response") or {}
    if row.status == ToolApproval.Status.APPROVED:
        content = response.get("content") if row.arguments.get("mode") == "form" else None
        return ElicitationAnswer(action="accept", content=content)
    if row.status == ToolApproval.Status.DENIED:
        return ElicitationAnswer(action="decline")
    return ElicitationAnswer(action="cancel")


def elicitation_event(row: ToolApproval) -> ElicitationRequired:
    """The event that asks the user (when asked, and again for a tab that reconnects)."""
    arguments = row.arguments
    return ElicitationRequired(
        elicitation_id=str(row.pk),
        tool_call_id=row.tool_call_id,
        server=row.server,
        mode=arguments.get("mode", "form"),
        message=arguments.get("message", ""),
        requested_schema=arguments.get("requested_schema") or {},
        url=arguments.get("url"),
        expires_at=row.expires_at,
        round=row.round,
    )


# --- the answering side ------------------------------------------------------------------------------


def elicitation_list(*, chat_id: int, user: User) -> list[ToolApproval]:
    """A chat's elicitations still waiting for the user, oldest first."""
    if not Chat.objects.filter(pk=chat_id, owner=user).exists():
        raise NotFound("Chat not found.")
    return list(
        ToolApproval.objects.filter(
            chat_id=chat_id, tool=ELICITATION_TOOL, status=ToolApproval.Status.PENDING, expires_at__gt=timezone.now()
        ).order_by("created_at", "tool_call_id")
    )


def elicitation_answer_store(
    *, user: User, elicitation_id: str, action: str, content: object = None, chat_id: int | None = None
) -> ToolApproval:
    """Store ``user``'s answer (the first one wins); accepted content is checked and completed with defaults.

    NotFound for an elicitation not in one of the user's chats; Conflict ``elicitation_not_pending`` once it
    was answered, expired or cancelled; ValidationFailed ``invalid_elicitation_content`` for content that
    does not fit the form.
    """
    with transaction.atomic():
        row = pending_row_for_update(row_id=elicitation_id, user=user, chat_id=chat_id, elicitation=True)
        answer: dict[str, Any] = {"action": action}
        if action == "accept" and row.arguments.get("mode", "form") == "form":
            schema = row.arguments.get("requested_schema") or {}
            answer["content"] = elicitation_content_validate(schema=schema, content={} if content is None else content)
        row.arguments = {**row.arguments, "response": answer}
        row.status = ACTIONS[action]
        row.decided_by = user
        row.decided_at = timezone.now()
        row.save(update_fields=["arguments", "status", "decided_by", "decided_at"])
    return row


async def elicitation_submit(
    *, user: User, elicitation_id: str, action: str, content: object = None, chat_id: int | None = None
) -> ToolApproval:
    """Answer (see ``elicitation_answer_store``), then wake the waiting call wherever its turn runs."""
    row = await run_db(
        elicitation_answer_store,
        user=user,
        elicitation_id=elicitation_id,
        action=action,
        content=content,
        chat_id=chat_id,
    )
    await approval_notify(row)
    return row


def parse_elicitation_answer(data: object) -> tuple[str, str, object]:
    """``{"elicitation_id"?, "action": "accept" | "decline" | "cancel", "content"?}`` -> (id, action, content)."""
    if not isinstance(data, dict):
        raise ValidationFailed("Send a JSON object.", code="invalid_elicitation_answer")
    errors: dict[str, list[str]] = {}
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:  # an object is unhashable: no set lookup
        errors["action"] = ['Must be "accept", "decline" or "cancel".']
    content = data.get("content")
    if content is not None and not isinstance(content, dict):
        errors["content"] = ["Must be an object of the form's fields."]
    if errors:
        raise ValidationFailed("The answer is not valid.", code="invalid_elicitation_answer", details=errors)
    return str(data.get("elicitation_id", "")), str(action), content
