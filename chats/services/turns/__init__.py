"""Turns: one message in, the model and its tools, every step stored and streamed.

- ``prepare``: validate a request, store nothing (``turn_prepare``);
- ``loop``: run it as a task of its own, the tool loop, events (``turn_start``, ``TurnHandle``);
- ``history``: the rows a turn writes, and the history it replays;
- ``rules``: one turn per chat and cancel, across workers (``turn_cancel``);
- ``approvals``: which tool calls run, and the calls that wait for a person's decision.
"""

from .approvals import approval_event, approval_list, approval_submit, parse_decision
from .loop import TurnHandle, turn_start
from .prepare import PreparedTurn, TurnRequest, turn_prepare
from .rules import TurnInProgress, turn_cancel, turn_running_here

__all__ = [
    "PreparedTurn",
    "TurnHandle",
    "TurnInProgress",
    "TurnRequest",
    "approval_event",
    "approval_list",
    "approval_submit",
    "parse_decision",
    "turn_cancel",
    "turn_prepare",
    "turn_running_here",
    "turn_start",
]
