"""An elicitation form's answer checked against its requested schema, with the schema's defaults filled in.

MCP restricts a requested schema to a flat object of primitives: string (optionally an ``enum`` or
``oneOf`` of ``const`` values), number, integer, boolean, and arrays of enum values (multi-select).
Fields left out of an accepted answer get their ``default`` (SEP-1034) before ``required`` is checked.
"""

import math
from typing import Any

from platform_site.exceptions import ValidationFailed

BOUNDS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems")


def schema_problem(schema: object) -> str | None:
    """Why a server's requested schema cannot be a form (it is the server's word: checked before use), or None."""
    if not isinstance(schema, dict):
        return "the schema is not an object"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(prop, dict) for prop in properties.values()):
        return "its properties are not an object of objects"
    for name, prop in properties.items():
        for bound in BOUNDS:
            value = prop.get(bound)
            if bound in prop and (isinstance(value, bool) or not isinstance(value, int | float)):
                return f"{name}: {bound} is not a number"
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        return "required is not a list of names"
    return None


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``default`` of every property that has one."""
    properties = schema.get("properties") or {}
    return {name: prop["default"] for name, prop in properties.items() if isinstance(prop, dict) and "default" in prop}


def _choices(prop: dict[str, Any]) -> list[Any] | None:
    if isinstance(prop.get("enum"), list):
        return list(prop["enum"])
    for key in ("oneOf", "anyOf"):
        options = prop.get(key)
        if isinstance(options, list) and all(isinstance(o, dict) and "const" in o for o in options):
            return [option["const"] for option in options]
    return None


def _check(prop: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(the value as stored, an error or None) for one field."""
    kind = prop.get("type")
    if kind == "string":
        if not isinstance(value, str):
            return value, "Must be a string."
        choices = _choices(prop)
        if choices is not None and value not in choices:
            return value, f"Must be one of {choices}."
        if "minLength" in prop and len(value) < prop["minLength"]:
            return value, f"At least {prop['minLength']} characters."
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            return value, f"At most {prop['maxLength']} characters."
        return value, None
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return value, "Must be a number."
        if kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                return value, "Must be a whole number."
            value = int(value)
        if "minimum" in prop and value < prop["minimum"]:
            return value, f"At least {prop['minimum']}."
        if "maximum" in prop and value > prop["maximum"]:
            return value, f"At most {prop['maximum']}."
        return value, None
    if kind == "boolean":
        return value, None if isinstance(value, bool) else "Must be true or false."
    if kind == "array":
        if not isinstance(value, list):
            return value, "Must be a list."
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        choices = _choices(items or {})
        if choices is not None and any(item not in choices for item in value):
            return value, f"Each must be one of {choices}."
        if "minItems" in prop and len(value) < prop["minItems"]:
            return value, f"Choose at least {prop['minItems']}."
        if "maxItems" in prop and len(value) > prop["maxItems"]:
            return value, f"Choose at most {prop['maxItems']}."
        return value, None
    return value, None  # a type MCP does not define for forms: passed on as given


def elicitation_content_validate(*, schema: dict[str, Any], content: object) -> dict[str, Any]:
    """The accepted ``content`` with the defaults applied.

    ValidationFailed (code ``invalid_elicitation_content``) names each field that does not fit.
    """
    if not isinstance(content, dict):
        raise ValidationFailed(
            "The content is not a JSON object.", code="invalid_elicitation_content", details={"content": ["An object."]}
        )
    properties: dict[str, Any] = schema.get("properties") or {}
    errors: dict[str, list[str]] = {}
    answer: dict[str, Any] = {}
    for name, value in content.items():
        prop = properties.get(name)
        if not isinstance(prop, dict):
            errors[name] = ["Not a field of this form."]
            continue
        if value is None:  # a field left empty counts as left out
            continue
        answer[name], error = _check(prop, value)
        if error:
            errors[name] = [error]
    for name, default in schema_defaults(schema).items():
        answer.setdefault(name, default)
    for name in schema.get("required") or []:
        if name not in answer and name not in errors:
            errors[name] = ["Required."]
    if errors:
        raise ValidationFailed("The answer does not fit the form.", code="invalid_elicitation_content", details=errors)
    return answer
