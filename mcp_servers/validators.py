"""Shape checks for the JSON columns of McpServer (admin, API and config import all go through them)."""

import re

from django.core.exceptions import ValidationError

SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")


def validate_server_name(value: str) -> None:
    # The name becomes the tool prefix "<server>__<tool>", so it may not hold "__".
    if not SERVER_NAME_RE.match(value) or value.endswith("_"):
        raise ValidationError(
            "Use letters, digits, '-' and single '_' (no '__', not at the ends).", code="invalid_server_name"
        )


def validate_string_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Must be a list of strings.", code="invalid_list")


def validate_string_mapping(value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise ValidationError("Must be an object mapping names to string values.", code="invalid_mapping")


POLICIES = ("allow", "ask", "deny")
USER_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER_VAR_KEYS = {"title": str, "description": str, "secret": bool, "required": bool}


def validate_tool_policies(value: object) -> None:
    """``{"tool name": "allow" | "ask" | "deny"}``."""
    if not isinstance(value, dict) or not all(isinstance(key, str) and key for key in value):
        raise ValidationError("Must be an object mapping tool names to a policy.", code="invalid_policies")
    bad = sorted(key for key, policy in value.items() if policy not in POLICIES)
    if bad:
        raise ValidationError(
            f"Policy must be one of allow, ask, deny (tools: {', '.join(bad)}).", code="invalid_policy"
        )


def validate_user_vars(value: object) -> None:
    """``{"NAME": {"title"?: str, "description"?: str, "secret"?: bool, "required"?: bool}}``."""
    if not isinstance(value, dict):
        raise ValidationError("Must be an object mapping variable names to their description.", code="invalid_vars")
    for name, spec in value.items():
        if not isinstance(name, str) or not USER_VAR_NAME_RE.match(name):
            raise ValidationError(
                f"{name!r} is not a variable name (letters, digits and _, not a digit first).", code="invalid_var_name"
            )
        if not isinstance(spec, dict):
            raise ValidationError(f"{name}: must be an object.", code="invalid_var")
        unknown = sorted(set(spec) - set(USER_VAR_KEYS))
        if unknown:
            raise ValidationError(f"{name}: unknown key(s) {', '.join(unknown)}.", code="invalid_var")
        wrong = sorted(key for key, kind in USER_VAR_KEYS.items() if key in spec and type(spec[key]) is not kind)
        if wrong:
            raise ValidationError(f"{name}: wrong type for {', '.join(wrong)}.", code="invalid_var")


def validate_roots(value: object) -> None:
    """``[{"uri": "file:///...", "name"?: str}]``: what the host answers on roots/list."""
    if not isinstance(value, list):
        raise ValidationError('Must be a list of {"uri", "name"?} objects.', code="invalid_roots")
    for root in value:
        if not isinstance(root, dict) or not isinstance(root.get("uri"), str) or not root["uri"].startswith("file://"):
            raise ValidationError('Each root is {"uri": "file://...", "name"?: "..."}.', code="invalid_roots")
        unknown = sorted(set(root) - {"uri", "name"})
        if unknown or not isinstance(root.get("name", ""), str):
            raise ValidationError(
                f"A root has only uri and name (not {', '.join(unknown) or 'that name'}).", code="invalid_roots"
            )
