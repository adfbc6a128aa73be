"""The chat engine: one turn of conversation, with the multi-round MCP tool loop, as a stream of events.

``turn_prepare`` checks everything that can be wrong with a request (chat,
provider, model, prompt variables, tools, limits) and stores nothing, so a bad
request is a clean 4xx. ``TurnHandle`` then runs the turn as a task of its own:
interfaces subscribe to its events, and a client that goes away does not stop
it (the reply is stored for when the user comes back); ``cancel()`` stops it,
keeping what was produced. The user message is stored before any provider is
called; each assistant message, tool result message, ToolExecution and
UsageRecord is stored as it completes.
"""

import asyncio
import contextvars
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db import connections as db_connections
from django.db.models import Max
from django.utils import timezone

from accounts.models import ApiKey, User
from mcp_servers.host import get_host
from mcp_servers.models import McpServer
from mcp_servers.results import ToolInfo, ToolResult
from platform_site.exceptions import NotFound, ValidationFailed
from prompts.models import SystemPrompt
from prompts.selectors import prompt_list
from providers.errors import ProviderError
from providers.models import Provider, ProviderModel
from providers.pricing import cost_for
from providers.registry import adapter_for, provider_is_configured
from providers.types import (
    CONTENT_BLOCKS,
    FinishEvent,
    GenerationOptions,
    Message,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolSpec,
    Usage,
)
from providers.types import TextDelta as ProviderTextDelta
from providers.types import ThinkingDelta as ProviderThinkingDelta
from usage.models import UsageRecord

from ..events import (
    ErrorEvent,
    Event,
    MessageDone,
    TextDelta,
    ThinkingDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnDone,
    TurnStarted,
    UsageReport,
)
from ..models import Chat, Role, ToolExecution
from ..models import Message as MessageRow
from .limits import limits_add_tokens, limits_check_budget, limits_check_request_rate, limits_check_tokens

logger = logging.getLogger(__name__)

VARIABLE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TITLE_LENGTH = 60
# Turns run as tasks of their own; keep references so they finish even when nobody listens.
_RUNNING: set[asyncio.Task[None]] = set()


# --- preparing a turn -----------------------------------------------------------------------


@dataclass
class TurnRequest:
    message: str
    provider: str | None = None
    model: str | None = None
    system_prompt_id: int | None = None
    variables: dict[str, str] = field(default_factory=dict)
    mcp_servers: list[str] | None = None
    tools: bool = True
    options: GenerationOptions = field(default_factory=GenerationOptions)


@dataclass
class PreparedTurn:
    chat: Chat
    user: User
    api_key: ApiKey | None
    provider: Provider
    model: str
    price_row: ProviderModel | None
    system: str | None
    message: str
    tool_servers: list[str] | None  # None: every enabled server
    tools_enabled: bool
    options: GenerationOptions


def render_prompt(content: str, variables: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; a missing or an unknown variable is a ValidationFailed."""
    wanted = set(VARIABLE_RE.findall(content))
    missing = sorted(wanted - set(variables))
    unknown = sorted(set(variables) - wanted)
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing: {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown: {', '.join(unknown)}")
        raise ValidationFailed(
            f"System prompt variables do not match ({'; '.join(problems)}).",
            code="invalid_variables",
            details={"missing": missing, "unknown": unknown},
        )
    return VARIABLE_RE.sub(lambda match: variables[match.group(1)], content)


def _prepare_sync(
    *, user: User, chat_id: int | None, request: TurnRequest
) -> tuple[Chat, Provider, str, ProviderModel | None, str | None, list[str] | None]:
    message = request.message.strip()
    if not message:
        raise ValidationFailed("The message is empty.", code="empty_message", details={"message": ["Empty."]})
    if len(request.message) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ValidationFailed(
            f"The message is longer than {settings.CHAT_MAX_MESSAGE_CHARS} characters.",
            code="message_too_long",
            details={"message": [f"At most {settings.CHAT_MAX_MESSAGE_CHARS} characters."]},
        )
    chat: Chat | None = None
    if chat_id is not None:
        chat = (
            Chat.objects.select_related("provider", "system_prompt")
            .prefetch_related("mcp_servers")
            .filter(pk=chat_id, owner=user)
            .first()
        )
        if chat is None:
            raise NotFound("Chat not found.")

    provider_name = request.provider or (chat.provider.name if chat and chat.provider else settings.DEFAULT_PROVIDER)
    provider = Provider.objects.filter(name=provider_name).first()
    if provider is None:
        raise ValidationFailed(
            f"Unknown provider {provider_name!r}.", code="unknown_provider", details={"provider": [provider_name]}
        )
    if not provider.enabled:
        raise ValidationFailed(f"Provider {provider_name!r} is disabled.", code="provider_disabled")
    if not provider_is_configured(provider):
        raise ValidationFailed(
            f"Provider {provider_name!r} is not configured: no API key in the environment.",
            code="provider_not_configured",
        )
    model = request.model or (chat.model if chat and chat.model and not request.provider else "") or ""
    if not model and provider_name == settings.DEFAULT_PROVIDER:
        model = settings.DEFAULT_MODEL
    if not model:
        raise ValidationFailed(
            "No model given, and no default for this chat or provider.",
            code="no_model",
            details={"model": ["Required."]},
        )
    price_row = ProviderModel.objects.filter(provider=provider, model_id=model).first()
    if price_row is not None and not price_row.enabled:
        raise ValidationFailed(f"Model {model!r} is disabled on {provider_name!r}.", code="model_disabled")

    prompt: SystemPrompt | None = None
    if request.system_prompt_id is not None:
        prompt = prompt_list(user=user).filter(pk=request.system_prompt_id).first()
        if prompt is None:
            raise ValidationFailed(f"System prompt {request.system_prompt_id} not found.", code="unknown_system_prompt")
    elif chat is not None:
        prompt = chat.system_prompt
    system = render_prompt(prompt.content, request.variables) if prompt else None
    if prompt is None and request.variables:
        raise ValidationFailed(
            "Variables were given but there is no system prompt.",
            code="invalid_variables",
            details={"unknown": sorted(request.variables), "missing": []},
        )

    servers: list[str] | None = None
    if request.mcp_servers is not None:
        known = set(McpServer.objects.filter(name__in=request.mcp_servers).values_list("name", flat=True))
        missing = sorted(set(request.mcp_servers) - known)
        if missing:
            raise ValidationFailed(
                f"Unknown MCP server(s): {', '.join(missing)}.",
                code="unknown_mcp_server",
                details={"mcp_servers": missing},
            )
        servers = sorted(known)
    elif chat is not None:
        selected = [server.name for server in chat.mcp_servers.all()]
        servers = selected or None

    limits_check_tokens(user=user)
    limits_check_budget(user=user)
    if chat is None:
        chat = Chat(owner=user)  # created when the turn starts, so a rejected request stores nothing
    return chat, provider, model, price_row, system, servers


async def turn_prepare(
    *,
    user: User,
    chat_id: int | None,
    request: TurnRequest,
    api_key: ApiKey | None = None,
    count_request: bool = False,
) -> PreparedTurn:
    """Validate a turn; raises the API's domain exceptions (4xx) and stores nothing."""
    if count_request:
        await database(limits_check_request_rate)(user=user)
    chat, provider, model, price_row, system, servers = await database(_prepare_sync)(
        user=user, chat_id=chat_id, request=request
    )
    if price_row is None:
        await _check_model_exists(provider, model)
    return PreparedTurn(
        chat=chat,
        user=user,
        api_key=api_key,
        provider=provider,
        model=model,
        price_row=price_row,
        system=system,
        message=request.message,
        tool_servers=servers,
        tools_enabled=request.tools,
        options=request.options,
    )


async def _check_model_exists(provider: Provider, model: str) -> None:
    """Reject a model the provider does not list; if the list cannot be read, let the provider decide."""
    try:
        models = await adapter_for(provider).list_models()
    except ProviderError:
        return
    known = {info.id for info in models}
    # Ollama resolves a name without a tag to ":latest".
    if models and model not in known and f"{model}:latest" not in known:
        raise ValidationFailed(
            f"Unknown model {model!r} for provider {provider.name!r}.", code="unknown_model", details={"model": [model]}
        )


# --- running a turn ---------------------------------------------------------------------------


@dataclass
class _Round:
    message: Message | None = None
    finish: FinishEvent | None = None
    text: list[str] = field(default_factory=list)
    error: ProviderError | None = None
    cancelled: bool = False
    latency_ms: int = 0


class TurnHandle:
    """One running turn. ``subscribe()`` gives a queue of its events (with those already sent replayed)."""

    def __init__(self, prepared: PreparedTurn) -> None:
        self.prepared = prepared
        self.sent: list[Event] = []
        self.done = asyncio.Event()
        self._subscribers: list[asyncio.Queue[Event]] = []
        self._cancel = asyncio.Event()
        self._message_ids: list[int] = []
        self._usage = Usage()
        self._cost = Decimal(0)
        self._position = 0
        context = contextvars.copy_context()
        context.run(_detach_from_request)
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"turn:{prepared.chat.pk}", context=context
        )
        _RUNNING.add(self.task)
        self.task.add_done_callback(_RUNNING.discard)

    # --- consumers ------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in self.sent:
            queue.put_nowait(event)
        self._subscribers.append(queue)
        return queue

    async def events(self, heartbeat: float | None = None):  # type: ignore[no-untyped-def]
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

    def cancel(self) -> None:
        self._cancel.set()

    def _emit(self, event: Event) -> None:
        self.sent.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    # --- the turn ---------------------------------------------------------------------------

    async def _run(self) -> None:
        p = self.prepared
        rounds = 0
        finish_reason = "error"
        success = False
        final_id: int | None = None
        try:
            history, user_id = await database(self._start)()
            tools = await self._tools()
            by_name = {tool.namespaced_name: tool for tool in tools}
            specs = [
                ToolSpec(name=tool.namespaced_name, description=tool.description, input_schema=tool.input_schema)
                for tool in tools
            ]
            self._emit(
                TurnStarted(
                    chat_id=p.chat.pk,
                    user_message_id=user_id,
                    provider=p.provider.name,
                    model=p.model,
                    tools=sorted(by_name),
                )
            )
            adapter = adapter_for(p.provider)
            while True:
                rounds += 1
                outcome = await self._provider_round(adapter, history, specs, rounds)
                if outcome.error is not None or outcome.cancelled or outcome.message is None:
                    finish_reason = "cancelled" if outcome.cancelled else "error"
                    final_id = await self._store_partial(outcome, finish_reason, rounds)
                    if outcome.error is not None:
                        self._emit(ErrorEvent(code=outcome.error.code, message=str(outcome.error)))
                    break
                assert outcome.finish is not None
                assistant_id = await database(self._store_assistant)(outcome, rounds)
                final_id = assistant_id
                calls = outcome.message.tool_calls
                if not calls:
                    finish_reason, success = outcome.finish.reason, True
                    break
                results, cancelled = await self._run_tools(calls, by_name, rounds)
                tool_message = await database(self._store_tool_results)(assistant_id, calls, results, rounds)
                history = [*history, outcome.message, tool_message]
                if cancelled:
                    finish_reason = "cancelled"
                    break
                if rounds >= settings.CHAT_MAX_TOOL_ROUNDS:
                    finish_reason = "round_limit"
                    note = (
                        f"Stopped: the model was still calling tools after {rounds} rounds "
                        f"(the limit is {settings.CHAT_MAX_TOOL_ROUNDS})."
                    )
                    final_id = await database(self._store_note)(note, finish_reason, rounds)
                    self._emit(ErrorEvent(code="tool_round_limit", message=note))
                    break
        except Exception as exc:  # a bug or a lost database: end the turn cleanly, say so
            logger.exception("chat turn failed")
            self._emit(ErrorEvent(code="internal_error", message=f"The turn failed: {type(exc).__name__}"))
            finish_reason, success = "error", False
        finally:
            try:
                await database(self._finish)()
            except Exception:
                logger.exception("could not update the chat after a turn")
            self._emit(
                TurnDone(
                    chat_id=p.chat.pk or 0,
                    success=success,
                    finish_reason=finish_reason,
                    message_ids=list(self._message_ids),
                    assistant_message_id=final_id,
                    input_tokens=self._usage.input_tokens,
                    output_tokens=self._usage.output_tokens,
                    cost=self._cost,
                    rounds=rounds,
                )
            )
            self.done.set()

    async def _tools(self) -> list[ToolInfo]:
        p = self.prepared
        if not p.tools_enabled or p.tool_servers == []:
            return []
        host = get_host()
        await host.await_ready()
        return await host.atools(p.tool_servers)

    async def _provider_round(
        self, adapter: Any, history: list[Message], specs: list[ToolSpec], round_number: int
    ) -> _Round:
        p = self.prepared
        outcome = _Round()
        started = time.perf_counter()

        async def consume() -> None:
            async for event in adapter.stream(
                messages=history, model=p.model, tools=specs or None, system=p.system, options=p.options
            ):
                if isinstance(event, ProviderTextDelta):
                    outcome.text.append(event.text)
                    self._emit(TextDelta(text=event.text, round=round_number))
                elif isinstance(event, ProviderThinkingDelta):
                    self._emit(ThinkingDelta(text=event.text, round=round_number))
                elif isinstance(event, FinishEvent):
                    outcome.finish = event
                    outcome.message = event.message

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
    ) -> tuple[dict[str, ToolResult], bool]:
        """Run every call of the round concurrently; a cancel turns the unfinished ones into error results."""
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
        tasks = {asyncio.ensure_future(self._call_tool(call, by_name.get(call.name))): call for call in calls}
        results: dict[str, ToolResult] = {}
        cancel_wait = asyncio.ensure_future(self._cancel.wait())
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
                        results[call.id] = ToolResult.error(
                            info.server if info else "", call.name, "Cancelled by the user before it finished."
                        )
                        self._emit_finished(call, results[call.id], round_number)
                    break
                pending.discard(cancel_wait)
        finally:
            cancel_wait.cancel()
        return results, cancelled

    def _emit_finished(self, call: ToolCallBlock, result: ToolResult, round_number: int) -> None:
        self._emit(
            ToolCallFinished(
                id=call.id,
                name=call.name,
                server=result.server,
                tool=result.tool or call.name,
                is_error=result.is_error,
                content=_truncate(result.text),
                duration_ms=result.duration_ms,
                round=round_number,
            )
        )

    async def _call_tool(self, call: ToolCallBlock, info: ToolInfo | None) -> ToolResult:
        server = info.server if info else ""
        tool = info.name if info else call.name
        if info is None:
            return ToolResult.error(server, tool, f"Unknown tool {call.name!r}. Use one of the tools offered.")
        if call.invalid_arguments is not None:
            return ToolResult.error(
                server, tool, f"The arguments are not a JSON object: {call.invalid_arguments[:200]}"
            )
        size = len(json.dumps(call.arguments))
        if size > settings.CHAT_MAX_TOOL_ARGUMENT_BYTES:
            return ToolResult.error(
                server,
                tool,
                f"The arguments are too large ({size} bytes; at most {settings.CHAT_MAX_TOOL_ARGUMENT_BYTES}).",
            )
        return await get_host().acall_tool(call.name, call.arguments)

    # --- storing, in the database's own thread ---------------------------------------------

    def _start(self) -> tuple[list[Message], int]:
        p = self.prepared
        if p.chat.pk is None:
            p.chat.title = _title(p.message)
            p.chat.provider = p.provider
            p.chat.model = p.model
            p.chat.save()
        elif not p.chat.title:
            p.chat.title = _title(p.message)
            Chat.objects.filter(pk=p.chat.pk).update(title=p.chat.title)
        rows = list(MessageRow.objects.filter(chat=p.chat).order_by("position"))
        self._position = rows[-1].position + 1 if rows else 0
        user_row = self._insert(role=Role.USER, content=[TextBlock(text=p.message)])
        history = [_canonical(row) for row in rows]
        return [m for m in history if m is not None] + [Message.user(p.message)], user_row.pk

    def _insert(self, **fields: Any) -> MessageRow:
        p = self.prepared
        content = [block.model_dump(exclude_none=True, exclude_defaults=False) for block in fields.pop("content")]
        for attempt in range(2):
            try:
                with transaction.atomic():
                    row = MessageRow.objects.create(chat=p.chat, position=self._position, content=content, **fields)
                break
            except IntegrityError:
                if attempt:
                    raise
                # Another turn on this chat took the position: continue after it.
                top = MessageRow.objects.filter(chat=p.chat).aggregate(top=Max("position"))["top"]
                self._position = (top or 0) + 1
        self._position += 1
        self._message_ids.append(row.pk)
        return row

    def _store_assistant(self, outcome: _Round, round_number: int) -> int:
        p = self.prepared
        assert outcome.finish is not None
        assert outcome.message is not None
        usage = outcome.finish.usage
        cost = cost_for(kind=p.provider.kind, model=p.model, usage=usage, override=p.price_row)
        with transaction.atomic():
            row = self._insert(
                role=Role.ASSISTANT,
                content=outcome.message.content,
                provider=p.provider.name,
                model=outcome.finish.model or p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                finish_reason=outcome.finish.reason,
            )
            UsageRecord.objects.create(
                user=p.user,
                api_key=p.api_key,
                chat=p.chat,
                provider=p.provider.name,
                model=p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cache_read_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost=cost,
                latency_ms=outcome.latency_ms,
            )
        limits_add_tokens(user_id=p.user.pk, tokens=usage.input_tokens + usage.output_tokens)
        self._usage = self._usage + usage
        self._cost += cost
        self._emit(
            MessageDone(message_id=row.pk, role="assistant", round=round_number, finish_reason=outcome.finish.reason)
        )
        self._emit(
            UsageReport(
                round=round_number,
                provider=p.provider.name,
                model=p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cache_read_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost=cost,
                latency_ms=outcome.latency_ms,
            )
        )
        return row.pk

    def _store_tool_results(
        self, assistant_id: int, calls: list[ToolCallBlock], results: dict[str, ToolResult], round_number: int
    ) -> Message:
        blocks = [
            ToolResultBlock(
                tool_call_id=call.id,
                name=call.name,
                content=_truncate(results[call.id].text),
                is_error=results[call.id].is_error,
            )
            for call in calls
        ]
        with transaction.atomic():
            row = self._insert(role=Role.TOOL, content=blocks)
            ToolExecution.objects.bulk_create(
                ToolExecution(
                    message_id=assistant_id,
                    tool_call_id=call.id,
                    round=round_number,
                    server=results[call.id].server,
                    tool=results[call.id].tool or call.name,
                    arguments=call.arguments,
                    result=results[call.id].content,
                    is_error=results[call.id].is_error,
                    duration_ms=results[call.id].duration_ms,
                )
                for call in calls
            )
        self._emit(MessageDone(message_id=row.pk, role="tool", round=round_number))
        return Message(role="tool", content=blocks)

    async def _store_partial(self, outcome: _Round, finish_reason: str, round_number: int) -> int | None:
        """Keep the text a failed or cancelled round produced, marked as such; its tool calls never ran."""
        text = "".join(outcome.text)
        if not text:
            return None
        return await database(self._store_note)(text, finish_reason, round_number)

    def _store_note(self, text: str, finish_reason: str, round_number: int) -> int:
        p = self.prepared
        row = self._insert(
            role=Role.ASSISTANT,
            content=[TextBlock(text=text)],
            provider=p.provider.name,
            model=p.model,
            finish_reason=finish_reason,
        )
        self._emit(MessageDone(message_id=row.pk, role="assistant", round=round_number, finish_reason=finish_reason))
        return row.pk

    def _finish(self) -> None:
        if self.prepared.chat.pk is not None:
            Chat.objects.filter(pk=self.prepared.chat.pk).update(updated_at=timezone.now())


def database[T](fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """Run ``fn`` (ORM work) off the event loop.

    Called from a sync caller's ``async_to_sync`` (tests, management code), the work goes back to that
    caller's thread, inside its transaction. On a server's own loop, turns run their database work in
    parallel worker threads, each connection handed back (to the pool) as soon as the work is done.
    """
    if asyncio.get_running_loop() in AsyncToSync.loop_thread_executors:
        return sync_to_async(fn)

    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            db_connections.close_all()

    return sync_to_async(run, thread_sensitive=False)


def _detach_from_request() -> None:
    """Run in the turn task's own context: the turn outlives the request that started it.

    Inherited, the request's thread-sensitive executor would take the turn's database work, and it is
    gone once a streaming response has started. Detached, that work goes to the executor of the loop
    (an ``async_to_sync`` caller's thread) or to asgiref's process-wide database thread.
    """
    AsyncToSync.executors.current = None
    SyncToAsync.thread_sensitive_context.set(None)  # type: ignore[arg-type]
    SyncToAsync.deadlock_context.set(False)


def _canonical(row: MessageRow) -> Message | None:
    if row.role not in (Role.USER, Role.ASSISTANT, Role.TOOL) or not row.content:
        return None
    return Message(role=row.role, content=CONTENT_BLOCKS.validate_python(row.content))


def _title(message: str) -> str:
    text = " ".join(message.split())
    if len(text) <= TITLE_LENGTH:
        return text
    cut = text[:TITLE_LENGTH].rsplit(" ", 1)[0] or text[:TITLE_LENGTH]
    return cut + "…"


def _truncate(text: str) -> str:
    limit = settings.CHAT_MAX_TOOL_RESULT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[truncated: {len(text) - limit} more characters]"


def turn_start(prepared: PreparedTurn) -> TurnHandle:
    """Start the turn as a task on the running loop; it runs to the end whoever listens."""
    return TurnHandle(prepared)
