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
