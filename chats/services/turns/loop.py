"""The turn loop: stream the model, run the round's tool calls concurrently, repeat; emit typed events.

``turn_start`` takes the chat and stores the user message (so a busy chat is a
409 before anything streams), then runs the turn as a task of its own: it
outlives the request that began it, and ``cancel()`` (or a cancel from another
worker) stops it, keeping what was produced. Interfaces subscribe to its
events. A write that fails is retried once; then the turn ends with a
``storage_failed`` error, and the client has the text it was sent.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from accounts.models import User
from mcp_servers.host import get_host
from mcp_servers.results import ToolInfo, ToolResult
from platform_site.db import run_db
from providers.base import ProviderAdapter
from providers.errors import ProviderError
from providers.registry import adapter_for
from providers.types import FinishEvent, Message, ThinkingBlock, ToolCallBlock, ToolSpec, Usage
from providers.types import TextDelta as ProviderTextDelta
from providers.types import ThinkingDelta as ProviderThinkingDelta

from ...events import (
    ClientToolCalls,
    ElicitationRequired,
    ErrorEvent,
    Event,
    MessageDone,
    TextDelta,
    ThinkingDelta,
    ToolApprovalDecided,
    ToolApprovalRequired,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
    TurnStarted,
    UsageReport,
)
from ...models import ApprovalDecision, ToolApproval
from .approvals import Verdict, approval_event, approval_wait, approvals_create, verdict_for
from .history import TurnStore, chat_delete_rows, tool_results_paired, truncate
from .interactions import TurnCall
from .prepare import PreparedTurn
from .progress import ProgressCallback, ProgressRelay
from .rules import turn_owner_name, turn_register, turn_unregister

logger = logging.getLogger(__name__)

UNSTORED_ASKS = (
    "This tool call needs a person's approval, which a request that is not stored (store: false) cannot wait for."
)

# Turns run as tasks of their own; keep references so they finish even when nobody listens.
_RUNNING: set[asyncio.Task[None]] = set()


class StorageFailed(Exception):
    """A write failed twice: the turn ends, and says so."""


@dataclass
class _Round:
    finish: FinishEvent | None = None
    text: list[str] = field(default_factory=list)
    error: ProviderError | None = None
    cancelled: bool = False
    latency_ms: int = 0


async def turn_start(prepared: PreparedTurn) -> "TurnHandle":
    """Take the chat, store the user message and start the turn; TurnInProgress if the chat is busy.

    A turn that creates its chat cannot find it busy, so its first rows are written while the model
    already answers: the turn's first event waits for them, and its reply is stored after them.
    """
    store = TurnStore(prepared, turn_id=uuid.uuid4().hex, owner=await turn_owner_name())
    if prepared.chat.pk is None:
        return TurnHandle(prepared, store, asyncio.ensure_future(_write(store.start)))
    started: asyncio.Future[tuple[list[Message], int]] = asyncio.get_running_loop().create_future()
    started.set_result(await run_db(store.start))
    return TurnHandle(prepared, store, started)


class TurnHandle:
    """One running turn. ``subscribe()`` gives a queue of its events (with those already sent replayed)."""

    def __init__(
        self, prepared: PreparedTurn, store: TurnStore, started: "asyncio.Future[tuple[list[Message], int]]"
    ) -> None:
        self.prepared = prepared
        self.store = store
        self.chat_id: int | None = prepared.chat.pk  # known once ``started`` (the history, the user message) is
        self.turn_id = store.turn_id
        self.sent: list[Event] = []
        self._started = started
        self._held: list[Event] | None = []  # events of the turn before its TurnStarted
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._cancel = asyncio.Event()
        self._usage = Usage()
        self._cost = Decimal(0)
        self._remembered = set(prepared.remembered)  # tools approved for the rest of the chat
        self._progress = ProgressRelay(self.loop, self._emit)
        self._interactions: dict[str, list[dict[str, Any]]] = {}  # tool call id -> its server's requests
        if self.chat_id is not None:  # cancellable from the start; a new chat's turn once the chat exists
            turn_register(self)
        self.task = self.loop.create_task(self._run(), name=f"turn:{self.chat_id or 'new chat'}")
        _RUNNING.add(self.task)
        self.task.add_done_callback(_RUNNING.discard)

    # --- listeners -------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in self.sent:
            queue.put_nowait(event)
        self._subscribers.append(queue)
        return queue

    async def events(self, heartbeat: float | None = None) -> AsyncIterator[Event | None]:
        """Events until turn_done; ``None`` every ``heartbeat`` seconds of silence (for keep-alive frames)."""
        queue = self.subscribe()
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat) if heartbeat else await queue.get()
            except TimeoutError:
                yield None
                continue
            yield event
            if isinstance(event, TurnDone):
                return

    async def result(self) -> list[Event]:
        return [event async for event in self.events() if event is not None]

    async def result_or_approvals(self) -> tuple[list[Event], list[ToolApprovalRequired | ElicitationRequired]]:
        """The turn's events once it is done; or, as soon as it waits for a person, what it asks them.

        A round announces all its approvals at once, so all that are queued then are what it waits for.
        """
        queue = self.subscribe()
        events: list[Event] = []
        try:
            while True:
                event = await queue.get()
                events.append(event)
                if isinstance(event, TurnDone):
                    return events, []
                if isinstance(event, ToolApprovalRequired | ElicitationRequired):
                    asked: list[ToolApprovalRequired | ElicitationRequired] = [event]
                    while not queue.empty():
                        later = queue.get_nowait()
                        if isinstance(later, ToolApprovalRequired | ElicitationRequired):
                            asked.append(later)
                    return events, asked
        finally:
            self._subscribers.remove(queue)

    def cancel(self) -> None:
        self._cancel.set()

    def cancel_threadsafe(self) -> None:
        self.loop.call_soon_threadsafe(self._cancel.set)

    def _emit(self, event: Event) -> None:
        if self._held is not None and not isinstance(event, TurnStarted | TurnDone):
            self._held.append(event)
            return
        self.sent.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        if isinstance(event, TurnStarted) and self._held is not None:
            held, self._held = self._held, None
            for later in held:
                self._emit(later)

    # --- the turn ----------------------------------------------------------------------------

    async def _run(self) -> None:
        p = self.prepared
        rounds = 0
        finish_reason, success = "error", False
        final_id: int | None = None
        lease = asyncio.ensure_future(self._keep_lease())
        history = tool_results_paired(p.incoming())  # a new chat's, while its rows are being written
        begun: asyncio.Future[list[Message]] | None = None
        try:
            tools = await self._tools()
            by_name = {tool.namespaced_name: tool for tool in tools}
            specs = [
                ToolSpec(name=tool.namespaced_name, description=tool.description, input_schema=tool.input_schema)
                for tool in tools
            ]
            # A front's client tools come after the server's; a name both use is the server's tool.
            client_tools = {spec.name for spec in p.client_tools if spec.name not in by_name}
            specs += [spec for spec in p.client_tools if spec.name in client_tools]
            adapter = adapter_for(p.provider)
            if self.chat_id is not None:
                history = await self._begin(sorted(by_name))
            else:
                # A new chat: the turn starts (and its held events flow) as soon as the chat's rows are in,
                # while the model already answers; the reply is stored after them.
                begun = asyncio.ensure_future(self._begin(sorted(by_name)))
            while True:
                rounds += 1
                outcome = await self._provider_round(adapter, history, specs, rounds)
                if begun is not None:
                    history, begun = await begun, None
                if outcome.error is not None or outcome.cancelled or outcome.finish is None:
                    finish_reason = "cancelled" if outcome.cancelled else "error"
                    text = "".join(outcome.text)
                    error = outcome.error
                    # Keep what a failed or cancelled round produced (its tool calls never ran), and always a
                    # failure with its reason: a reloaded chat shows the reply failed, and why. A row with no
                    # content is never sent to a model (see history).
                    if text or error is not None:
                        final_id = await self._store_note(
                            text,
                            finish_reason,
                            rounds,
                            error_code=error.code if error is not None else "",
                            error_message=str(error) if error is not None else "",
                        )
                    if error is not None:
                        self._emit(ErrorEvent(code=error.code, message=str(error)))
                    break
                calls = outcome.finish.message.tool_calls
                final_id = await self._store_assistant(outcome, rounds, last=not calls)
                if not calls:
                    finish_reason, success = outcome.finish.reason, True
                    break
                for_client = [call for call in calls if call.name in client_tools]
                if for_client:  # the round's server calls run now; the client runs its own and comes back
                    calls = [call for call in calls if call.name not in client_tools]
                    # Announced first: a server call of the round may wait for an approval, and the client
                    # must know its own calls' ids whatever happens to the rest of the round.
                    self._emit(ClientToolCalls(calls=[_client_call(call) for call in for_client], round=rounds))
                if calls:
                    results, verdicts, cancelled = await self._run_tools(calls, by_name, rounds)
                    tool_id, tool_message = await _write(
                        self.store.store_tool_results,
                        assistant_id=final_id,
                        calls=calls,
                        results=results,
                        verdicts=verdicts,
                        round_number=rounds,
                        interactions=self._interactions,
                    )
                    self._emit(MessageDone(message_id=tool_id, role="tool", round=rounds))
                    history = [*history, outcome.finish.message, tool_message]
                    if cancelled:
                        finish_reason = "cancelled"
                        break
                if for_client:
                    finish_reason, success = "tool_calls", True
                    break
                if rounds >= settings.CHAT_MAX_TOOL_ROUNDS:
                    finish_reason = "round_limit"
                    note = (
                        f"Stopped: the model was still calling tools after {rounds} rounds "
                        f"(the limit is {settings.CHAT_MAX_TOOL_ROUNDS})."
                    )
                    final_id = await self._store_note(note, finish_reason, rounds)
                    self._emit(ErrorEvent(code="tool_round_limit", message=note))
                    break
        except StorageFailed:
            logger.exception("storing chat %s turn failed", self.chat_id)
            self._emit(
                ErrorEvent(
                    code="storage_failed",
                    message="The reply could not be stored; the text already sent was not saved.",
                )
            )
            finish_reason, success = "error", False
        except Exception as exc:  # a bug: end the turn cleanly, say so
            logger.exception("chat turn failed")
            self._emit(ErrorEvent(code="internal_error", message=f"The turn failed: {type(exc).__name__}"))
            finish_reason, success = "error", False
        finally:
            lease.cancel()
            if begun is not None:  # the turn failed in its first round: its chat's rows still go in, then free
                with contextlib.suppress(Exception):
                    await begun
            elif self.chat_id is None:  # it failed before its first round: the same
                with contextlib.suppress(Exception):
                    await self._started
            if self._held is not None:  # the chat was never stored: what happened still goes out
                held, self._held = self._held, None
                for event in held:
                    self._emit(event)
            if not self.store.released:
                try:
                    await _write(self.store.release)
                except Exception:
                    logger.exception("could not free chat %s after a turn", self.chat_id)
            unstored = self.prepared.chat.pk
            if self.prepared.ephemeral and unstored is not None:  # store: false; its usage rows stay
                try:
                    await _write(chat_delete_rows, chat_id=unstored)
                except Exception:
                    logger.exception("could not delete the unstored chat %s after a turn", self.chat_id)
            turn_unregister(self)
            self._emit(
                TurnDone(
                    chat_id=self.chat_id,
                    success=success,
                    finish_reason=finish_reason,
                    message_ids=list(self.store.message_ids),
                    assistant_message_id=final_id,
                    input_tokens=self._usage.input_tokens,
                    output_tokens=self._usage.output_tokens,
                    cost=self._cost,
                    rounds=rounds,
                )
            )
            self.done.set()

    async def _begin(self, tools: list[str]) -> list[Message]:
        """Once the chat is taken and the user message stored: the turn is registered and says it started."""
        history, user_message_id = await self._started
        if self.chat_id is None:
            self.chat_id = self.prepared.chat.pk
            turn_register(self)
        self._emit(
            TurnStarted(
                chat_id=self.chat_id,
                user_message_id=user_message_id,
                provider=self.prepared.provider.name,
                model=self.prepared.model,
                tools=tools,
            )
        )
        return history

    async def _keep_lease(self) -> None:
        interval = settings.CHAT_TURN_LEASE_SECONDS / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await run_db(self.store.renew_lease)
            except DatabaseError:
                logger.warning("renewing the turn lease of chat %s failed", self.chat_id, exc_info=True)

    async def _tools(self) -> list[ToolInfo]:
        p = self.prepared
        if not p.tools_enabled or p.tool_servers == []:
            return []
        host = get_host()
        await host.await_ready()
        return await host.atools(p.tool_servers, user=p.user)

    async def _provider_round(
        self, adapter: ProviderAdapter, history: list[Message], specs: list[ToolSpec], round_number: int
    ) -> _Round:
        """Stream one model reply, racing it against a cancel."""
        p = self.prepared
        outcome = _Round()
        started = time.perf_counter()
        options = p.options
        if round_number > 1 and options.tool_choice is not None and options.tool_choice.mode in ("required", "tool"):
            # A forced tool call is the first round's: forced on every round, the model could never answer.
            options = options.model_copy(update={"tool_choice": None})

        async def consume() -> None:
            if not p.streamed:
                completion = await adapter.complete(
                    messages=history, model=p.model, tools=specs or None, system=p.system, options=options
                )
                message = completion.message
                for block in message.content:
                    if isinstance(block, ThinkingBlock) and not block.redacted:
                        self._emit(ThinkingDelta(text=block.text, round=round_number))
                        if block.signature:
                            self._emit(ThinkingDelta(text="", signature=block.signature, round=round_number))
                if message.text:
                    outcome.text.append(message.text)
                    self._emit(TextDelta(text=message.text, round=round_number))
                outcome.finish = FinishEvent(
                    reason=completion.stop_reason,
                    raw_reason=completion.raw_reason,
                    message=message,
                    usage=completion.usage,
                    model=completion.model,
                )
                return
            async for event in adapter.stream(
                messages=history, model=p.model, tools=specs or None, system=p.system, options=options
            ):
                if isinstance(event, ProviderTextDelta):
                    outcome.text.append(event.text)
                    self._emit(TextDelta(text=event.text, round=round_number))
                elif isinstance(event, ProviderThinkingDelta):
                    self._emit(ThinkingDelta(text=event.text, signature=event.signature, round=round_number))
                elif isinstance(event, FinishEvent):
                    outcome.finish = event

        streaming = asyncio.ensure_future(consume())
        cancelled = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({streaming, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
        if not streaming.done():
            streaming.cancel()
            outcome.cancelled = True
        try:
            await streaming
        except asyncio.CancelledError:
            outcome.cancelled = True
        except ProviderError as exc:
            outcome.error = exc
        outcome.latency_ms = int((time.perf_counter() - started) * 1000)
        return outcome

    async def _run_tools(
        self, calls: list[ToolCallBlock], by_name: dict[str, ToolInfo], round_number: int
    ) -> tuple[dict[str, ToolResult], dict[str, Verdict], bool]:
        """Run every call of the round concurrently; a cancel turns the unfinished ones into error results.

        Each call gets its verdict first (see ``approvals``): those that ask are announced together, then
        wait for a decision while the round's other calls run.
        """
        for call in calls:
            info = by_name.get(call.name)
            self._emit(
                ToolCallStarted(
                    id=call.id,
                    name=call.name,
                    server=info.server if info else "",
                    tool=info.name if info else call.name,
                    arguments=call.arguments,
                    round=round_number,
                )
            )
        verdicts: dict[str, Verdict] = {}
        asking: list[tuple[ToolCallBlock, ToolInfo]] = []
        for call in calls:
            info = by_name.get(call.name)
            if info is None or call.invalid_arguments is not None:
                continue  # refused before any policy: see _call_tool
            verdict = verdict_for(info, policies=self.prepared.tool_policies, remembered=self._remembered)
            if verdict is None and self.prepared.ephemeral:
                # Nobody can answer for a chat that is gone when the request ends (a front's store: false).
                verdict = Verdict(policy="ask", decision=ApprovalDecision.DENIED, reason=UNSTORED_ASKS)
            if verdict is None:
                asking.append((call, info))
            else:
                verdicts[call.id] = verdict
        approvals: dict[str, ToolApproval] = {}
        if asking:
            assert self.chat_id is not None, "tools run after the chat is stored"
            rows = await _write(
                approvals_create, chat_id=self.chat_id, turn_id=self.turn_id, round_number=round_number, calls=asking
            )
            for row in rows:
                approvals[row.tool_call_id] = row
                self._emit(approval_event(row))
        tasks: dict[asyncio.Future[ToolResult], ToolCallBlock] = {
            asyncio.ensure_future(
                self._gated_call(call, by_name.get(call.name), approvals.get(call.id), verdicts, round_number)
            ): call
            for call in calls
        }
        results: dict[str, ToolResult] = {}
        cancel_wait: asyncio.Future[Any] = asyncio.ensure_future(self._cancel.wait())
        pending = set(tasks)
        cancelled = False
        try:
            while pending:
                done, pending = await asyncio.wait(pending | {cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
                if cancel_wait in done:
                    done.discard(cancel_wait)
                    cancelled = True
                for task in done:
                    call = tasks[task]
                    results[call.id] = task.result()
                    self._emit_finished(call, results[call.id], round_number)
                if cancelled:
                    for task in pending:
                        task.cancel()
                    for task in pending:
                        call = tasks[task]
                        info = by_name.get(call.name)
                        if call.id in approvals and call.id not in verdicts:
                            verdicts[call.id] = Verdict(policy="ask", decision=ApprovalDecision.CANCELLED)
                        results[call.id] = ToolResult.error(
                            info.server if info else "", call.name, "Cancelled by the user before it finished."
                        )
                        self._emit_finished(call, results[call.id], round_number)
                    break
                pending.discard(cancel_wait)
        finally:
            cancel_wait.cancel()
        return results, verdicts, cancelled

    async def _gated_call(
        self,
        call: ToolCallBlock,
        info: ToolInfo | None,
        approval: ToolApproval | None,
        verdicts: dict[str, Verdict],
        round_number: int = 1,
    ) -> ToolResult:
        """The call, once its verdict lets it run; else the error result that says why not."""
        if approval is not None:
            verdict, remember = await approval_wait(approval)
            verdicts[call.id] = verdict
            if remember:
                self._remembered.add(call.name)
            self._emit(
                ToolApprovalDecided(
                    approval_id=str(approval.pk),
                    tool_call_id=call.id,
                    decision=verdict.decision,
                    auto=verdict.auto,
                    remember=remember,
                )
            )
        decided = verdicts.get(call.id)
        if info is not None and decided is not None and decided.refusal is not None:
            return ToolResult.error(info.server, info.name, decided.refusal)
        # The call's server may ask for a model's or the user's answer meanwhile (sampling, elicitation).
        interaction = (
            TurnCall(self, tool_call_id=call.id, server=info.server, round_number=round_number) if info else None
        )
        if interaction is not None:
            self._interactions[call.id] = interaction.interactions
        try:
            return await _call_tool(
                call,
                info,
                self.prepared.user,
                on_progress=self._progress.reporter(call.id),
                interaction=interaction,
            )
        finally:
            if interaction is not None:
                interaction.close()

    def _emit_finished(self, call: ToolCallBlock, result: ToolResult, round_number: int) -> None:
        self._progress.finish(call.id)
        self._emit(
            ToolCallFinished(
                id=call.id,
                name=call.name,
                server=result.server,
                tool=result.tool or call.name,
                is_error=result.is_error,
                content=truncate(result.text),
                duration_ms=result.duration_ms,
                round=round_number,
            )
        )

    # --- storing ------------------------------------------------------------------------------

    async def _store_assistant(self, outcome: _Round, round_number: int, *, last: bool) -> int:
        finish = outcome.finish
        assert finish is not None
        message_id, cost = await _write(self.store.store_assistant, finish, latency_ms=outcome.latency_ms, last=last)
        usage = finish.usage
        self._usage = self._usage + usage
        self._cost += cost
        p = self.prepared
        self._emit(
            MessageDone(message_id=message_id, role="assistant", round=round_number, finish_reason=finish.reason)
        )
        self._emit(
            UsageReport(
                round=round_number,
                provider=p.provider.name,
                model=finish.model or p.model,  # as the message is stored, so the page shows the same after a reload
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cache_read_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost=cost,
                latency_ms=outcome.latency_ms,
            )
        )
        return message_id

    async def _store_note(
        self, text: str, finish_reason: str, round_number: int, *, error_code: str = "", error_message: str = ""
    ) -> int:
        message_id = await _write(
            self.store.store_note,
            text,
            finish_reason=finish_reason,
            error_code=error_code,
            error_message=error_message,
        )
        self._emit(
            MessageDone(message_id=message_id, role="assistant", round=round_number, finish_reason=finish_reason)
        )
        return message_id


def _client_call(call: ToolCallBlock) -> dict[str, Any]:
    """A call the client runs: its arguments, or the text the model sent when that is not a JSON object."""
    arguments: dict[str, Any] | str = call.arguments if call.invalid_arguments is None else call.invalid_arguments
    return {"id": call.id, "name": call.name, "arguments": arguments}


async def _write[T](fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A write of the turn: retried once (each write is one transaction); StorageFailed after that."""
    for attempt in range(2):
        try:
            return await run_db(fn, *args, **kwargs)
        except DatabaseError:
            if attempt:
                raise StorageFailed() from None
            logger.warning("a turn write failed; retrying once", exc_info=True)
    raise AssertionError("unreachable")


async def _call_tool(
    call: ToolCallBlock,
    info: ToolInfo | None,
    user: User,
    *,
    on_progress: ProgressCallback | None = None,
    interaction: TurnCall | None = None,
) -> ToolResult:
    server = info.server if info else ""
    tool = info.name if info else call.name
    if info is None:
        # Not offered in this turn: unknown, of a server closed to this user, or denied. All alike to the model.
        return ToolResult.error(server, tool, f"Tool {call.name!r} is not available. Use one of the tools offered.")
    if call.invalid_arguments is not None:
        return ToolResult.error(server, tool, f"The arguments are not a JSON object: {call.invalid_arguments[:200]}")
    size, limit = len(json.dumps(call.arguments)), settings.CHAT_MAX_TOOL_ARGUMENT_BYTES
    if size > limit:
        return ToolResult.error(
            server,
            tool,
            f"The arguments are too large ({size} bytes; at most {settings.CHAT_MAX_TOOL_ARGUMENT_BYTES}).",
        )
    # Per-user servers: the user's own connection. Progress comes back through on_progress.
    return await get_host().acall_tool(
        call.name, call.arguments, user=user, on_progress=on_progress, interaction=interaction
    )
