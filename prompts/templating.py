"""Filling a system prompt's ``{{variables}}`` for one turn."""

import re

from platform_site.exceptions import ValidationFailed

VARIABLE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def prompt_render(*, content: str, variables: dict[str, str]) -> str:
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
