"""Each user's own values for an MCP server's ``user_vars``: stored encrypted, read back only for the host.

A row's ``values`` is the JSON object of one user's values for one server, encrypted with Fernet (AES-128-CBC
with HMAC-SHA256, from ``cryptography``) under the keys in ``MCP_CREDENTIALS_KEYS``: the first key encrypts,
every key decrypts. Rotation: put a new key first, keep the old ones after it, restart, run
``manage.py rotate_mcp_credentials`` (every row is re-encrypted with the first key), then drop the old keys.
Without the setting, one key is derived from SECRET_KEY, which is fine for a laptop; ``check --deploy`` warns.
That derived key always decrypts too (after the configured ones), so moving from it to keys of one's own is
the same rotation.

No API answer, admin screen or log carries a value: only the host reads them (``credential_values_for``),
to start that user's connection.
"""

import base64
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from accounts.models import User
from platform_site.exceptions import ValidationFailed

from .config import VAR_RE
from .models import McpOAuthFlow, McpOAuthToken, McpServer, McpUserCredential

logger = logging.getLogger(__name__)

MAX_VALUE_CHARS = 4096
_DERIVATION_INFO = b"llm-platform: MCP user credentials"


# --- keys and encryption ---------------------------------------------------------------------------


def derived_key(secret_key: str) -> bytes:
    """The Fernet key used when MCP_CREDENTIALS_KEYS is unset: HKDF-SHA256 of SECRET_KEY."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError as exc:
            # The key itself is not repeated: it is a secret.
            raise ImproperlyConfigured(
                f"MCP_CREDENTIALS_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes; make "
                'one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
            ) from exc
    return MultiFernet([*fernets, Fernet(derived_key(secret_key))])


def credentials_fernet() -> MultiFernet:
    """The keys in force: the first of MCP_CREDENTIALS_KEYS encrypts, all of them and the derived key decrypt."""
    return _fernet_for(tuple(settings.MCP_CREDENTIALS_KEYS), settings.SECRET_KEY)


class CredentialsUnreadable(Exception):
    """A stored value was encrypted with a key that is no longer configured (or was altered)."""


def encrypt_values(values: dict[str, str]) -> str:
    return credentials_fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt_values(token: str) -> dict[str, str]:
    try:
        data = json.loads(credentials_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise CredentialsUnreadable from exc
    return {str(name): str(value) for name, value in data.items()}


# --- reads -----------------------------------------------------------------------------------------


def _readable(row: McpUserCredential) -> dict[str, str]:
    try:
        return decrypt_values(row.values)
    except CredentialsUnreadable:
        # Treated as never set: the user is asked to set the values again.
        logger.error(
            "MCP credentials of user %s for server %s cannot be decrypted with MCP_CREDENTIALS_KEYS",
            row.user_id,
            row.server_id,
        )
        return {}


def credential_values_for(*, user_id: int, server_names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``user_id``'s decrypted values by server name (one query), each limited to the server's current user_vars.

    For the host only: nothing else may see a value.
    """
    rows = McpUserCredential.objects.filter(user_id=user_id, server__name__in=list(server_names)).select_related(
        "server"
    )
    values: dict[str, dict[str, str]] = {}
    for row in rows:
        declared = row.server.user_vars or {}
        values[row.server.name] = {name: value for name, value in _readable(row).items() if name in declared}
    return values


def credential_values(*, server_name: str, user_id: int) -> dict[str, str]:
    return credential_values_for(user_id=user_id, server_names=[server_name]).get(server_name, {})


def credential_names_for(*, user_id: int, server_names: Iterable[str]) -> dict[str, frozenset[str]]:
    """The names of the variables ``user_id`` has set, by server name (values are decrypted, not returned)."""
    values = credential_values_for(user_id=user_id, server_names=server_names)
    return {name: frozenset(names) for name, names in values.items()}


def credential_row_names(row: McpUserCredential) -> list[str] | None:
    """The names ``row`` holds values for (admin shows these, never the values); None if it cannot be read."""
    try:
        return sorted(decrypt_values(row.values))
    except CredentialsUnreadable:
        return None


def required_user_vars(server: McpServer) -> list[str]:
    return sorted(name for name, spec in (server.user_vars or {}).items() if spec.get("required", True))


def user_vars_missing(*, server: McpServer, user: User) -> list[str]:
    """The server's required variables ``user`` has not set: while any is, the server needs their setup."""
    required = required_user_vars(server)
    if not required:
        return []
    have = credential_names_for(user_id=user.pk, server_names=[server.name]).get(server.name, frozenset())
    return [name for name in required if name not in have]


@dataclass(frozen=True)
class UserVarState:
    """One declared variable as a form shows it: never its value, only whether one is set."""

    name: str
    title: str
    description: str
    secret: bool
    required: bool
    set: bool


def user_var_states(*, server: McpServer, user: User) -> list[UserVarState]:
    have = credential_names_for(user_id=user.pk, server_names=[server.name]).get(server.name, frozenset())
    return [
        UserVarState(
            name=name,
            title=str(spec.get("title") or name),
            description=str(spec.get("description", "")),
            secret=bool(spec.get("secret", False)),
            required=bool(spec.get("required", True)),
            set=name in have,
        )
        for name, spec in sorted((server.user_vars or {}).items())
    ]


# --- writes ----------------------------------------------------------------------------------------


def _checked_values(server: McpServer, values: Any) -> dict[str, str]:
    """``values`` if every name is one of the server's user_vars and every value fits; blank values dropped."""
    if not server.user_vars:
        raise ValidationFailed(f"MCP server {server.name!r} has no user variables to set.", code="no_user_vars")
    if not isinstance(values, dict):
        raise ValidationFailed("values must be an object.", details={"values": ["Must be an object."]})
    unknown = sorted(str(name) for name in values if name not in server.user_vars)
    if unknown:
        raise ValidationFailed(
            f"MCP server {server.name!r} has no user variable(s) {', '.join(unknown)}; "
            f"it has {', '.join(sorted(server.user_vars))}.",
            code="unknown_user_var",
            details={"unknown": unknown, "known": sorted(server.user_vars)},
        )
    problems: dict[str, list[str]] = {}
    for name, value in values.items():
        if not isinstance(value, str):
            problems[name] = ["Must be a string."]
        elif len(value) > MAX_VALUE_CHARS:
            problems[name] = [f"At most {MAX_VALUE_CHARS} characters."]
        elif "\x00" in value:
            problems[name] = ["Null characters are not allowed."]
        elif VAR_RE.search(value):
            # It would be expanded from the platform's own environment when the server starts.
            problems[name] = ["A ${NAME} reference is not allowed in a value."]
    if problems:
        raise ValidationFailed(
            f"Invalid value for {', '.join(sorted(problems))}.",
            code="invalid_user_var_value",
            details={"values": problems},
        )
    return {name: value for name, value in values.items() if value}


# How a change to a user's values or sign-in reaches this process's host: wired by the app's ready(), so that
# this module (and oauth) do not import the host, which imports them.
_user_connection_closer: Callable[[str, int], None] | None = None


def credentials_close_with(closer: Callable[[str, int], None]) -> None:
    """Have ``closer(server_name, user_id)`` let go of a user's connection in this process (app start-up)."""
    global _user_connection_closer
    _user_connection_closer = closer


def user_connection_close_here(server_name: str, user_id: int) -> None:
    # The host of every process compares the values it started a connection with on that connection's next
    # use (a fingerprint), so other workers pick up the change by themselves; this one also lets go of the
    # old process (and the old values in it) at once.
    if _user_connection_closer is not None:
        _user_connection_closer(server_name, user_id)


@transaction.atomic
def credential_set(*, server: McpServer, user: User, values: dict[str, str]) -> list[str]:
    """Replace ``user``'s values for ``server`` with ``values`` (blank ones mean unset); the names now set.

    Raises ValidationFailed: ``no_user_vars``, ``unknown_user_var``, ``invalid_user_var_value``. A required
    variable left unset is allowed: the server then needs setup by this user.
    """
    clean = _checked_values(server, values)
    if clean:
        McpUserCredential.objects.update_or_create(server=server, user=user, defaults={"values": encrypt_values(clean)})
    else:
        McpUserCredential.objects.filter(server=server, user=user).delete()
    transaction.on_commit(partial(user_connection_close_here, server.name, user.pk))
    return sorted(clean)


@transaction.atomic
def credential_delete(*, server: McpServer, user: User) -> None:
    """Forget every value ``user`` set for ``server`` (nothing to forget is fine)."""
    if not server.user_vars:
        raise ValidationFailed(f"MCP server {server.name!r} has no user variables to set.", code="no_user_vars")
    McpUserCredential.objects.filter(server=server, user=user).delete()
    transaction.on_commit(partial(user_connection_close_here, server.name, user.pk))


@transaction.atomic
def credential_rows_delete(*, rows: Iterable[McpUserCredential]) -> int:
    """Delete these rows (admin); each user's running connection in this process closes. How many went."""
    rows = list(rows)
    McpUserCredential.objects.filter(pk__in=[row.pk for row in rows]).delete()
    for row in rows:
        transaction.on_commit(partial(user_connection_close_here, row.server.name, row.user_id))
    return len(rows)


@dataclass(frozen=True)
class RotationReport:
    rotated: int
    unreadable: tuple[int, ...]  # ids of the rows no configured key decrypts
    # Users' OAuth tokens (McpOAuthToken) and sign-ins under way (McpOAuthFlow), encrypted with the same keys.
    oauth_rotated: int = 0
    oauth_unreadable: tuple[str, ...] = ()  # "token <id>", "sign-in <id>"


def _rotate_rows(fernet: MultiFernet, model: Any, field: str) -> tuple[list[Any], list[int]]:
    rotated, unreadable = [], []
    for row in model.objects.select_for_update().order_by("pk"):
        try:
            setattr(row, field, fernet.rotate(getattr(row, field).encode()).decode())
        except InvalidToken:
            unreadable.append(row.pk)
            continue
        rotated.append(row)
    # Not a change of what the rows hold: updated_at stays.
    model.objects.bulk_update(rotated, [field], batch_size=500)
    return rotated, unreadable


@transaction.atomic
def credentials_rotate() -> RotationReport:
    """Re-encrypt every row with the first key of MCP_CREDENTIALS_KEYS; rows no key reads are left as they are.

    The users' own values, and their OAuth tokens and sign-ins under way (``mcp_servers.oauth``).
    """
    fernet = credentials_fernet()
    rotated, unreadable = _rotate_rows(fernet, McpUserCredential, "values")
    tokens, tokens_unreadable = _rotate_rows(fernet, McpOAuthToken, "data")
    flows, flows_unreadable = _rotate_rows(fernet, McpOAuthFlow, "data")
    return RotationReport(
        rotated=len(rotated),
        unreadable=tuple(unreadable),
        oauth_rotated=len(tokens) + len(flows),
        oauth_unreadable=(*(f"token {pk}" for pk in tokens_unreadable), *(f"sign-in {pk}" for pk in flows_unreadable)),
    )
