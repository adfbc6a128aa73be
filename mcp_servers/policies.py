"""Which tool calls run at once, which wait for a human's yes, and which never run.

An admin's choice for the tool wins. Without one, the server's annotations decide, as untrusted hints
that can only be overridden, never widen what an admin set: ``readOnlyHint: true`` allows,
``destructiveHint: true`` asks. Everything else follows the server's default, itself ``allow`` unless set.
"""

from .models import Policy


def effective_policy(*, tool: str, annotations: dict, default: str, tools: dict) -> tuple[str, str]:
    """``(policy, source)``: source is ``tool`` (the admin's per-tool choice), ``readOnlyHint``,
    ``destructiveHint`` or ``default`` (the server's default, or allow when it has none)."""
    chosen = tools.get(tool)
    if chosen in Policy.values:
        return chosen, "tool"
    if annotations.get("readOnlyHint") is True:
        return Policy.ALLOW, "readOnlyHint"
    if annotations.get("destructiveHint") is True:
        return Policy.ASK, "destructiveHint"
    return (default if default in Policy.values else Policy.ALLOW), "default"
