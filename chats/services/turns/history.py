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
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.pricing import cost_for
from providers.types import CONTENT_BLOCKS, FinishEvent, Message, TextBlock, ToolCallBlock, ToolResultBlock
from usage.limits import limits_add_tokens
from usage.services import usage_record_create

from ...models import Chat, Role, ToolExecution
from ...models import Message as MessageRow
from .prepare import PreparedTurn
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
        """Take the chat (TurnInProgress if another turn holds it), store the user message; the history."""
        p = self.prepared
        chat = p.chat
        now = timezone.now()
        lease = now + timedelta(seconds=settings.CHAT_TURN_LEASE_SECONDS)
        with transaction.atomic():
            if chat.pk is None:
                chat.title = _title(p.message)
                chat.provider = p.provider
                chat.model = p.model
                chat.turn_id, chat.turn_owner, chat.turn_lease_until = self.turn_id, self.owner, lease
                chat.save(force_insert=True)
                history, position = [], 0
            else:
                fields: dict[str, Any] = {"turn_id": self.turn_id, "turn_owner": self.owner, "turn_lease_until": lease}
                if not chat.title:
                    fields["title"] = chat.title = _title(p.message)
                taken = (
                    Chat.objects.filter(pk=chat.pk).filter(Q(turn_id="") | Q(turn_lease_until__lt=now)).update(**fields)
                )
                if not taken:
                    raise TurnInProgress()
                history, position = history_load(chat_id=chat.pk)
            row = MessageRow.objects.create(
                chat=chat, position=position, role=Role.USER, content=[{"type": "text", "text": p.message}]
            )
        self.position = position + 1
        self.message_ids.append(row.pk)
        return [*history, Message.user(p.message)], row.pk

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
        Chat.objects.filter(pk=self.prepared.chat.pk, turn_id=self.turn_id).update(
            turn_id="", turn_owner="", turn_lease_until=None, updated_at=timezone.now()
        )

    # --- rounds -----------------------------------------------------------------------------

    def store_assistant(self, finish: FinishEvent, *, latency_ms: int, last: bool) -> tuple[int, Decimal]:
        """The assistant message and its UsageRecord, and the release when it ends the turn: one transaction."""
        p = self.prepared
        usage = finish.usage
        cost = cost_for(kind=p.provider.kind, model=p.model, usage=usage, override=p.price_row)
        with transaction.atomic():
            row = MessageRow.objects.create(
                chat=p.chat,
                position=self.position,
                role=Role.ASSISTANT,
                content=_dump(finish.message.content),
                provider=p.provider.name,
                model=finish.model or p.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                finish_reason=finish.reason,
            )
            usage_record_create(
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
            )
            if last:
                self._release()
        self._committed(row.pk, released=last)
        if p.user.tokens_per_minute is not None:
            limits_add_tokens(user_id=p.user.pk, tokens=usage.input_tokens + usage.output_tokens)
        return row.pk, cost

    def store_tool_results(
        self, *, assistant_id: int, calls: list[ToolCallBlock], results: dict[str, Any], round_number: int
    ) -> tuple[int, Message]:
        """The tool message (what the model sees next) and one ToolExecution per call, in one transaction."""
        blocks = [
            ToolResultBlock(
                tool_call_id=call.id,
                name=call.name,
                content=truncate(results[call.id].text),
                is_error=results[call.id].is_error,
            )
            for call in calls
        ]
        with transaction.atomic():
            row = MessageRow.objects.create(
                chat=self.prepared.chat, position=self.position, role=Role.TOOL, content=_dump(blocks)
            )
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
        self._committed(row.pk)
        return row.pk, Message(role="tool", content=blocks)

    def store_note(self, text: str, *, finish_reason: str, last: bool = True) -> int:
        """An assistant message the model did not finish (partial text, a cancel, the round limit)."""
        p = self.prepared
        with transaction.atomic():
            row = MessageRow.objects.create(
                chat=p.chat,
                position=self.position,
                role=Role.ASSISTANT,
                content=_dump([TextBlock(text=text)]),
                provider=p.provider.name,
                model=p.model,
                finish_reason=finish_reason,
            )
            if last:
                self._release()
        self._committed(row.pk, released=last)
        return row.pk

    def _committed(self, message_id: int, *, released: bool = False) -> None:
        self.position += 1
        self.message_ids.append(message_id)
        self.released = self.released or released


# --- reading history ----------------------------------------------------------------------------


def history_load(*, chat_id: int) -> tuple[list[Message], int]:
    """The chat's canonical history and the next free position.

    One query for the messages' keys in order; the content of those this process has not parsed yet in a
    second. A key is the id with the creation time: SQLite may hand out a deleted row's id again.
    """
    rows = list(
        MessageRow.objects.filter(chat_id=chat_id).order_by("position").values_list("id", "created_at", "position")
    )
    keys = [(pk, created) for pk, created, _ in rows]
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
    messages = [message for key in keys if (message := fresh[key] if key in fresh else _parsed.get(key)) is not None]
    return messages, (rows[-1][2] + 1 if rows else 0)


def _canonical(role: str, content: list[dict[str, Any]]) -> Message | None:
    if role not in (Role.USER, Role.ASSISTANT, Role.TOOL) or not content:
        return None
    return Message(role=role, content=CONTENT_BLOCKS.validate_python(content))


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
