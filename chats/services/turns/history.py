"""Storing a turn's history: the chat's turn lock, the user message, each round's rows, the release.

Every method here is sync ORM work for ``platform_site.db.run_db``. A turn
writes in as few transactions as it can: one to take the chat and store the
user message, one per provider round (assistant message with its UsageRecord,
plus the release of the chat when it is the last), one per tool round. State
(next position, ids) changes only after a transaction commits, so a failed
write can be retried as it was.
"""

import threading
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from platform_site.sql import FIRST_ID, Statement, insert, insert_many, prepared_values, run_together, update
from providers.pricing import cost_for
from providers.types import (
    CONTENT_BLOCKS,
    ContentBlock,
    FinishEvent,
    Message,
    MessageRole,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
)
from usage.limits import limits_add_tokens
from usage.services import usage_record_statement

from ...models import Chat, Role, ToolExecution
from ...models import Message as MessageRow
from .prepare import PreparedTurn

if TYPE_CHECKING:
    from .approvals import Verdict
from .rules import TurnInProgress

TITLE_LENGTH = 60

# Stored messages never change, so their canonical form is parsed once per process.
_PARSED_LIMIT = 50_000
_parsed: dict[tuple[int, Any], Message | None] = {}
_parsed_lock = threading.Lock()


class TurnStore:
    """The rows of one turn."""

    def __init__(self, prepared: PreparedTurn, *, turn_id: str, owner: str) -> None:
        self.prepared = prepared
        self.turn_id = turn_id
        self.owner = owner
        self.position = 0
        self.message_ids: list[int] = []
        self.released = False

    # --- start and end ------------------------------------------------------------------------

    def start(self) -> tuple[list[Message], int]:
        """Take the chat (TurnInProgress if another turn holds it), store the incoming messages; the history.

        The incoming messages are the user message, or the conversation a front (/v1) brought; the id
        returned is the last one's.
        """
        p = self.prepared
        chat = p.chat
        now = timezone.now()
        lease = now + timedelta(seconds=settings.CHAT_TURN_LEASE_SECONDS)
        incoming = p.incoming()  # the user's text, then any attached resources
        contents: list[tuple[str, list[dict[str, Any]]]] = [(m.role, _dump(m.content)) for m in incoming]
        if chat.pk is None:
            chat.title = _title(p.message)
            chat.provider = p.provider
            chat.model = p.model
            chat.turn_id, chat.turn_owner, chat.turn_lease_until = self.turn_id, self.owner, lease
            chat.created_at = chat.updated_at = now
            new_chat = insert(
                Chat,
                {
                    "owner_id": chat.owner_id,
                    "title": chat.title,
                    "provider_id": p.provider.pk,
                    "model": p.model,
                    "system_prompt_id": chat.system_prompt_id,
                    "created_at": now,
                    "updated_at": now,
                    "turn_id": self.turn_id,
                    "turn_owner": self.owner,
                    "turn_lease_until": lease,
                    "approved_tools": [],
                },
                returning_id=True,
            )
            chat.pk, *row_ids = run_together(
                [
                    new_chat,
                    *(
                        self._message(chat_id=FIRST_ID, role=role, content=content, created_at=now, position=index)
                        for index, (role, content) in enumerate(contents)
                    ),
                ]
            )
            chat._state.adding = False
            history: list[Message] = []
            position = 0
        else:
            fields: dict[str, Any] = {"turn_id": self.turn_id, "turn_owner": self.owner, "turn_lease_until": lease}
            if not chat.title:
                fields["title"] = _title(p.message)
            if connection.vendor == "postgresql" and len(contents) == 1:
                history, position, row_id = self._take_postgres(
                    fields=fields, now=now, role=contents[0][0], content=contents[0][1]
                )
                row_ids = [row_id]
            else:
                history, position, row_ids = self._take(fields=fields, now=now, contents=contents)
            chat.title = fields.get("title", chat.title)
        self.position = position + len(incoming)
        self.message_ids.extend(row_ids)
        for row_id, message in zip(row_ids, incoming, strict=True):
            _remember(row_id, now, message)
        return tool_results_paired([*history, *incoming]), row_ids[-1]

    def _take(
        self, *, fields: dict[str, Any], now: Any, contents: list[tuple[str, list[dict[str, Any]]]]
    ) -> tuple[list[Message], int, list[int]]:
        """Take the chat and store the messages in one transaction: the history before them, the first's position,
        their ids."""
        chat = self.prepared.chat
        with transaction.atomic():
            taken = Chat.objects.filter(pk=chat.pk).filter(Q(turn_id="") | Q(turn_lease_until__lt=now)).update(**fields)
            if not taken:
                raise TurnInProgress()
            history, position = history_load(chat_id=chat.pk)
            row_ids = run_together(
                [
                    self._message(role=role, content=content, created_at=now, position=position + index)
                    for index, (role, content) in enumerate(contents)
                ]
            )
        return history, position, list(row_ids)

    def _take_postgres(
        self, *, fields: dict[str, Any], now: Any, role: str, content: list[dict[str, Any]]
    ) -> tuple[list[Message], int, int]:
        """``_take`` as one statement: take the chat, add the message at the next position, read the keys before it.

        The UPDATE's condition is the lock: when another turn holds the chat, nothing is inserted and no row
        comes back. The SELECT sees the table as the statement began, so the history is the one before the
        new message.
        """
        quote = connection.ops.quote_name
        chat_table, message_table = quote(Chat._meta.db_table), quote(MessageRow._meta.db_table)
        chat_id, position_column, created = quote("id"), quote("position"), quote("created_at")
        set_columns, set_params = prepared_values(Chat, fields)
        columns, params = prepared_values(MessageRow, self._message_values(role=role, content=content, now=now))
        sql = f"""
            WITH taken AS (
                UPDATE {chat_table} SET {", ".join(f"{column} = %s" for column in set_columns)}
                WHERE {chat_id} = %s AND ({quote("turn_id")} = '' OR {quote("turn_lease_until")} < %s)
                RETURNING {chat_id}
            ), added AS (
                INSERT INTO {message_table} ({quote("chat_id")}, {position_column}, {", ".join(columns)})
                SELECT taken.{chat_id}, (
                    SELECT COALESCE(MAX({position_column}) + 1, 0) FROM {message_table} WHERE {quote("chat_id")} = %s
                ), {", ".join(["%s"] * len(columns))} FROM taken
                RETURNING {chat_id}, {position_column}
            )
            SELECT {chat_id}, NULL, {position_column}, TRUE FROM added
            UNION ALL
            SELECT {chat_id}, {created}, {position_column}, FALSE FROM {message_table}
            WHERE {quote("chat_id")} = %s AND EXISTS (SELECT 1 FROM taken)
            ORDER BY 4 DESC, 3
        """  # noqa: S608  (names from model metadata, quoted; every value is a bound parameter)
        chat_pk = self.prepared.chat.pk
        with connection.cursor() as cursor:
            cursor.execute(sql, [*set_params, chat_pk, now, chat_pk, *params, chat_pk])
            rows = cursor.fetchall()
        if not rows:
            raise TurnInProgress()
        (row_id, _, position, _), history_rows = rows[0], rows[1:]
        return history_messages([(pk, created_at) for pk, created_at, _, _ in history_rows]), position, row_id

    def _message(
        self,
        *,
        role: str,
        content: list[dict[str, Any]],
        created_at: Any,
        chat_id: object = None,
        position: int | None = None,
        **fields: Any,
    ) -> Statement:
        """The INSERT of this turn's next message (at ``self.position`` unless given), returning its id."""
        values = {
            "chat_id": self.prepared.chat.pk if chat_id is None else chat_id,
            "position": self.position if position is None else position,
            **self._message_values(role=role, content=content, now=created_at, **fields),
        }
        return insert(MessageRow, values, returning_id=True)

    @staticmethod
    def _message_values(*, role: str, content: list[dict[str, Any]], now: Any, **fields: Any) -> dict[str, Any]:
        values = {
            "role": role,
            "content": content,
            "provider": "",
            "model": "",
            "input_tokens": 0,
            "output_tokens": 0,
            "finish_reason": "",
            "cost": Decimal(0),
            "error_code": "",
            "error_message": "",
            "created_at": now,
        }
        values.update(fields)
        return values

    def renew_lease(self) -> bool:
        """Keep the chat while the turn runs; False if the turn no longer holds it."""
        until = timezone.now() + timedelta(seconds=settings.CHAT_TURN_LEASE_SECONDS)
        return bool(Chat.objects.filter(pk=self.prepared.chat.pk, turn_id=self.turn_id).update(turn_lease_until=until))

    def release(self) -> None:
        """Free the chat for its next turn (and mark it updated)."""
        if self.released or self.prepared.chat.pk is None:
            return
        self._release()
        self.released = True

    def _release(self) -> None:
        run_together([self._release_statement()])

    def _release_statement(self) -> Statement:
        return update(
            Chat,
            {"turn_id": "", "turn_owner": "", "turn_lease_until": None, "updated_at": timezone.now()},
            where={"id": self.prepared.chat.pk, "turn_id": self.turn_id},
        )

    # --- rounds -----------------------------------------------------------------------------

    def store_assistant(self, finish: FinishEvent, *, latency_ms: int, last: bool) -> tuple[int, Decimal]:
        """The assistant message and its UsageRecord, and the release when it ends the turn: one transaction."""
        p = self.prepared
        usage = finish.usage
        cost = cost_for(kind=p.provider.kind, model=p.model, usage=usage, override=p.price_row)
        now = timezone.now()
        statements = [
            self._message(
                role=Role.ASSISTANT,
                content=_dump(finish.message.content),
                created_at=now,
                provider=p.provider.name,
                model=finish.model or p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                finish_reason=finish.reason,
                cost=cost,
            ),
            usage_record_statement(
                user_id=p.user.pk,
                api_key_id=p.api_key.pk if p.api_key else None,
                chat_id=p.chat.pk,
                provider=p.provider.name,
                model=p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cache_read_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost=cost,
                latency_ms=latency_ms,
            ),
        ]
        if last:
            statements.append(self._release_statement())
        (row_id,) = run_together(statements)
        self._committed(row_id, now, finish.message, released=last)
        if p.user.tokens_per_minute is not None:
            limits_add_tokens(user_id=p.user.pk, tokens=usage.input_tokens + usage.output_tokens)
        return row_id, cost

    def store_tool_results(
        self,
        *,
        assistant_id: int,
        calls: list[ToolCallBlock],
        results: dict[str, Any],
        verdicts: dict[str, "Verdict"],
        round_number: int,
        interactions: dict[str, list[dict[str, Any]]] | None = None,
    ) -> tuple[int, Message]:
        """The tool message (what the model sees next) and one ToolExecution per call, in one transaction."""
        blocks: list[ContentBlock] = [
            ToolResultBlock(
                tool_call_id=call.id,
                name=call.name,
                content=truncate(results[call.id].text),
                is_error=results[call.id].is_error,
            )
            for call in calls
        ]
        now = timezone.now()
        executions = insert_many(
            ToolExecution,
            [
                {
                    "message_id": assistant_id,
                    "tool_call_id": call.id,
                    "round": round_number,
                    "server": results[call.id].server,
                    "tool": results[call.id].tool or call.name,
                    "arguments": call.arguments,
                    "result": results[call.id].content,
                    "is_error": results[call.id].is_error,
                    "duration_ms": results[call.id].duration_ms,
                    **_approval_fields(verdicts.get(call.id)),
                    # What the call's server asked meanwhile (sampling, elicitation) and the answers, in order.
                    "interactions": (interactions or {}).get(call.id, []),
                    "created_at": now,
                }
                for call in calls
            ],
        )
        (row_id,) = run_together([self._message(role=Role.TOOL, content=_dump(blocks), created_at=now), executions])
        message = Message(role="tool", content=blocks)
        self._committed(row_id, now, message)
        return row_id, message

    def store_note(
        self, text: str, *, finish_reason: str, last: bool = True, error_code: str = "", error_message: str = ""
    ) -> int:
        """An assistant message the model did not finish (partial text, a cancel, the round limit, a failure).

        A failure may have no text at all: its row then has no content, which keeps it out of what a model
        is sent (``_canonical``), while the page shows it as failed with ``error_message``.
        """
        p = self.prepared
        now = timezone.now()
        blocks: list[ContentBlock] = [TextBlock(text=text)] if text else []
        statements = [
            self._message(
                role=Role.ASSISTANT,
                content=_dump(blocks),
                created_at=now,
                provider=p.provider.name,
                model=p.model,
                finish_reason=finish_reason,
                error_code=error_code[:100],
                error_message=error_message,
            )
        ]
        if last:
            statements.append(self._release_statement())
        (row_id,) = run_together(statements)
        self._committed(row_id, now, Message(role="assistant", content=blocks), released=last)
        return row_id

    def _committed(self, message_id: int, created_at: Any, message: Message, *, released: bool = False) -> None:
        self.position += 1
        self.message_ids.append(message_id)
        self.released = self.released or released
        _remember(message_id, created_at, message)


def chat_delete_rows(*, chat_id: int) -> None:
    """Delete a chat kept only for its turn (a front's ``store: false``); its usage rows stay, without it."""
    Chat.objects.filter(pk=chat_id).delete()


# --- reading history ----------------------------------------------------------------------------


def history_load(*, chat_id: int) -> tuple[list[Message], int]:
    """The chat's canonical history and the next free position."""
    rows = list(
        MessageRow.objects.filter(chat_id=chat_id).order_by("position").values_list("id", "created_at", "position")
    )
    return history_messages([(pk, created) for pk, created, _ in rows]), (rows[-1][2] + 1 if rows else 0)


def history_messages(keys: list[tuple[int, Any]]) -> list[Message]:
    """The canonical messages of these keys (in order): parsed once per process, the rest read in one query.

    A key is the id with the creation time: SQLite may hand out a deleted row's id again. The messages a
    turn of this process writes are remembered as it writes them, so its next turn reads no content.
    """
    fresh: dict[tuple[int, Any], Message | None] = {}
    missing = [key for key in keys if key not in _parsed]
    if missing:
        wanted = set(missing)
        for pk, created, role, content in MessageRow.objects.filter(pk__in=[pk for pk, _ in missing]).values_list(
            "id", "created_at", "role", "content"
        ):
            if (pk, created) in wanted:
                fresh[(pk, created)] = _canonical(role, content)
        with _parsed_lock:
            if len(_parsed) + len(fresh) > _PARSED_LIMIT:
                _parsed.clear()
            _parsed.update(fresh)
    return [message for key in keys if (message := fresh[key] if key in fresh else _parsed.get(key)) is not None]


NO_RESULT = "No result: the call was not answered (the client did not send its result, or the turn stopped)."


def tool_results_paired(history: list[Message]) -> list[Message]:
    """``history`` as providers take it: each assistant message's tool calls answered, once each, by the tool
    message right after it.

    A round's results may come in parts (its server calls run here, a client's own come with its next
    request): tool messages in a row become one. A call left unanswered (a client that went on without
    sending its result, a turn stopped mid-round) gets an error result; a result given twice (a client's
    retry) or for no call of that message is dropped. Providers refuse a history with any of these.
    """
    paired: list[Message] = []
    for message in history:
        if message.role == "assistant" and not message.content:
            continue  # a failed reply with nothing in it: providers refuse an empty message
        if message.role == "tool":
            if paired and paired[-1].role == "tool":
                paired[-1] = Message(role="tool", content=[*paired[-1].content, *message.content])
            else:
                paired.append(message)
            continue
        _answer_open_calls(paired)
        paired.append(message)
    _answer_open_calls(paired)
    return paired


def _answer_open_calls(paired: list[Message]) -> None:
    """Make the tail of ``paired`` (an assistant message with calls, maybe then its tool message) well formed."""
    results: list[ContentBlock] = []
    if paired and paired[-1].role == "tool":
        results = list(paired.pop().content)
    asked = paired[-1].tool_calls if paired and paired[-1].role == "assistant" else []
    if not asked:
        if results and not paired:
            paired.append(Message(role="tool", content=results))  # a conversation a client began with results
        return
    by_id: dict[str, ContentBlock] = {}
    for block in results:
        if isinstance(block, ToolResultBlock) and block.tool_call_id not in by_id:
            by_id[block.tool_call_id] = block
    answered: list[ContentBlock] = [
        by_id.get(call.id) or ToolResultBlock(tool_call_id=call.id, name=call.name, content=NO_RESULT, is_error=True)
        for call in asked
    ]
    paired.append(Message(role="tool", content=answered))


def _remember(message_id: int, created_at: Any, message: Message) -> None:
    with _parsed_lock:
        if len(_parsed) >= _PARSED_LIMIT:
            _parsed.clear()
        _parsed[(message_id, created_at)] = message if message.content else None  # as _canonical reads it


def _approval_fields(verdict: "Verdict | None") -> dict[str, Any]:
    if verdict is None:  # refused before any policy applied (an unknown tool, arguments that are not JSON)
        return {
            "approval_policy": "",
            "approval_decision": "",
            "approval_auto": True,
            "approval_by_id": None,
            "approval_at": None,
        }
    return {
        "approval_policy": verdict.policy,
        "approval_decision": verdict.decision,
        "approval_auto": verdict.auto,
        "approval_by_id": verdict.by_id,
        "approval_at": verdict.at,
    }


def _canonical(role: str, content: list[dict[str, Any]]) -> Message | None:
    if role not in (Role.USER, Role.ASSISTANT, Role.TOOL) or not content:
        return None
    return Message(role=cast(MessageRole, role), content=CONTENT_BLOCKS.validate_python(content))


def _dump(blocks: list[Any]) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True, exclude_defaults=False) for block in blocks]


def _title(message: str) -> str:
    text = " ".join(message.split())
    if len(text) <= TITLE_LENGTH:
        return text
    cut = text[:TITLE_LENGTH].rsplit(" ", 1)[0] or text[:TITLE_LENGTH]
    return cut + "…"


def truncate(text: str) -> str:
    limit = settings.CHAT_MAX_TOOL_RESULT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[truncated: {len(text) - limit} more characters]"
