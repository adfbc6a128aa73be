"""Keeping an MCP server's secrets out of logs, errors, API output, admin forms and exported files.

Which values are secret cannot be told from their names, so every env and header value counts
(as configured and with its ``${VAR}`` references expanded), plus the password and query values
of the URL, plus a user's values of the server's secret ``user_vars`` in that user's connection
(``ServerSpec.secrets``; the others are blanked too wherever they go into env or headers). Values
shorter than ``MIN_SECRET_LENGTH`` are left alone: blanking every "1" or "on" would garble text
without protecting anything.
"""

import os
import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from .config import VAR_RE, ServerSpec

REDACTED = "***"
# What admin forms and exported files show instead of a stored value; sent back, it keeps that value.
SECRET_MASK = "********"  # noqa: S105 (a placeholder, not a password)
MIN_SECRET_LENGTH = 4

Redactor = Callable[[str], str]


def _expand_known(value: str) -> str:
    # Unset variables stay as written: a missing one is a configuration error, reported elsewhere.
    return VAR_RE.sub(lambda match: os.environ.get(match.group(1), match.group(0)), value)


def server_secrets(spec: ServerSpec) -> set[str]:
    values: list[str] = []
    for _name, value in (*spec.env, *spec.headers):
        for form in (value, _expand_known(value)):
            values.append(form)
            # "Bearer <token>": the credential alone may show up in a message too.
            values.extend(form.split(None, 1)[1:])
    if spec.url:
        url = urlsplit(_expand_known(spec.url))
        values.extend(filter(None, [url.password]))
        values.extend(value for _name, value in parse_qsl(url.query))
    values.extend(spec.secrets)
    values.extend((spec.oauth_client_secret, _expand_known(spec.oauth_client_secret)))
    return {value.strip() for value in values if len(value.strip()) >= MIN_SECRET_LENGTH}


def redactor_for(spec: ServerSpec) -> Redactor:
    """A function that replaces every secret of ``spec`` in a text with ``***``."""
    secrets = sorted(server_secrets(spec), key=len, reverse=True)  # the longest first: no half-replaced values
    if not secrets:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(secret) for secret in secrets))
    return lambda text: pattern.sub(REDACTED, text) if text else text


def is_reference(value: str) -> bool:
    """Exactly one ``${VAR}`` reference: it names where the secret is, which is not itself a secret."""
    return VAR_RE.fullmatch(value) is not None


def mask_values(mapping: Mapping[str, str]) -> dict[str, str]:
    return {key: value if is_reference(value) else SECRET_MASK for key, value in mapping.items()}


def unmask_values(submitted: Mapping[str, str], stored: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """``submitted`` with each masked value replaced by the stored one; the names that have none to keep."""
    missing = sorted(key for key, value in submitted.items() if value == SECRET_MASK and key not in stored)
    return {key: stored.get(key, value) if value == SECRET_MASK else value for key, value in submitted.items()}, missing
