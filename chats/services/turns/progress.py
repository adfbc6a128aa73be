"""A turn's tool progress: the servers' progress notices, as ``tool_progress`` events of the call they belong to.

The MCP host reports a call's progress on its own loop; the relay hops to the turn's loop and emits there.
A call gets at most one event per ``MIN_INTERVAL`` seconds: a notice that comes sooner waits, and a newer
one replaces it, so a chatty server cannot flood the clients and the latest progress still shows. Nothing
is emitted for a call once it has finished.
"""

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ...events import Event, ToolProgress

MIN_INTERVAL = 0.1  # seconds: at most 10 events a second per call


class ProgressCallback(Protocol):
    """What the MCP host calls with a call's progress (the SDK's ProgressFnT)."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


@dataclass
class _Gate:
    last: float = -math.inf
    waiting: ToolProgress | None = None
    timer: asyncio.TimerHandle | None = None
    finished: bool = False


class ProgressRelay:
    def __init__(self, loop: asyncio.AbstractEventLoop, emit: Callable[[Event], None]) -> None:
        self._loop = loop
        self._emit = emit
        self._gates: dict[str, _Gate] = {}

    def reporter(self, tool_call_id: str) -> ProgressCallback:
        """The callback the host calls (on its own loop) with ``tool_call_id``'s progress."""
        loop = self._loop

        async def report(progress: float, total: float | None, message: str | None) -> None:
            event = ToolProgress(tool_call_id=tool_call_id, progress=progress, total=total, message=message)
            loop.call_soon_threadsafe(self._arrived, event)

        return report

    def finish(self, tool_call_id: str) -> None:
        """The call is over: a notice still waiting or yet to come is dropped."""
        gate = self._gates.setdefault(tool_call_id, _Gate())
        gate.finished = True
        gate.waiting = None
        if gate.timer is not None:
            gate.timer.cancel()
            gate.timer = None

    def _arrived(self, event: ToolProgress) -> None:
        gate = self._gates.setdefault(event.tool_call_id, _Gate())
        if gate.finished:
            return
        now = self._loop.time()
        if now - gate.last >= MIN_INTERVAL:
            gate.last = now
            self._emit(event)
            return
        gate.waiting = event
        if gate.timer is None:
            gate.timer = self._loop.call_at(gate.last + MIN_INTERVAL, self._release, gate)

    def _release(self, gate: _Gate) -> None:
        gate.timer = None
        event, gate.waiting = gate.waiting, None
        if event is not None and not gate.finished:
            gate.last = self._loop.time()
            self._emit(event)
