"""What a connection needs to know about a server, taken from its McpServer row.

A ``ServerSpec`` is an immutable snapshot of a row; its ``fingerprint`` tells a
host whether a saved row changed anything that needs a reconnect. ``${VAR}``
references in env values, headers and the URL are expanded from the process
environment at connect time, never stored expanded.

A server whose args, env, headers, cwd or URL use ``{{user.id}}`` or ``{{user.username}}``, or that
declares ``user_vars`` (values each user sets for themselves, ``mcp_servers.credentials``), is *per-user*:
the host runs one connection per (server, user), from the spec ``for_user`` returns.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .models import McpServer

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
USER_PLACEHOLDER_RE = re.compile(r"\{\{user\.(id|username)\}\}")
# Every "{{...}}" the host may fill in: the user's id and name, and the names of the server's user_vars.
PLACEHOLDER_RE = re.compile(r"\{\{(user\.id|user\.username|[A-Za-z_][A-Za-z0-9_]*)\}\}")
# Django's own username characters (\w is any script's letters and digits), minus what could climb out
# of a directory or pass for an option: no "/" or "\\", and no "." or "-" first (".", "..", "-rf").
SAFE_USERNAME_RE = re.compile(r"[\w@+][\w.@+-]*")


# What a connected server is told of when it changes, instead of being reconnected.
LIVE_FIELDS = ("log_level", "roots")


class ConfigError(Exception):
    """The row cannot be turned into a connection (e.g. a ${VAR} that is not set)."""


class NeedsSignIn(ConfigError):
    """An OAuth server the user has not connected their account to (or must connect again)."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    transport: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float = 30.0
    tool_allowlist: tuple[str, ...] = ()
    denied_tools: tuple[str, ...] = ()
    display_name: str = ""
    description: str = ""
    enabled: bool = True
    # The variables each user sets for themselves (McpServer.user_vars): all names, the required and the secret.
    user_vars: tuple[str, ...] = ()
    required_vars: tuple[str, ...] = ()
    secret_vars: tuple[str, ...] = ()
    # Per-user specs only: directories the host creates before starting the process (see for_user).
    make_dirs: tuple[str, ...] = ()
    # Per-user specs only: the user's secret values, which redaction blanks wherever they show up.
    secrets: tuple[str, ...] = ()
    # OAuth (McpServer.auth): "oauth" is per-user, each user's connection reads that user's tokens
    # (``mcp_servers.oauth``); "client_credentials" gets its own token with the client ID and secret.
    auth: str = "none"
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    oauth_scopes: str = ""
    oauth_issuer: str = ""
    # Per-user OAuth specs only: whose tokens, and when they signed in (a new sign-in starts a new connection).
    oauth_user_id: int | None = None
    oauth_grant: str = ""
    # Applied to a live connection without reconnecting (logging/setLevel, roots/list_changed): LIVE_FIELDS.
    log_level: str = ""
    roots: tuple[tuple[str, str], ...] = ()  # (uri, name); name may be ""
    fingerprint: str = field(default="", compare=False)

    @classmethod
    def from_row(cls, row: McpServer) -> "ServerSpec":
        user_vars: dict[str, dict[str, Any]] = row.user_vars or {}
        spec = cls(
            name=row.name,
            transport=row.transport,
            command=row.command,
            args=tuple(row.args or ()),
            env=tuple(sorted((row.env or {}).items())),
            cwd=row.cwd,
            url=row.url,
            headers=tuple(sorted((row.headers or {}).items())),
            timeout_seconds=float(row.timeout_seconds),
            tool_allowlist=tuple(row.tool_allowlist or ()),
            denied_tools=tuple(row.denied_tools or ()),
            display_name=row.display_name,
            description=row.description,
            enabled=row.enabled,
            user_vars=tuple(sorted(user_vars)),
            required_vars=tuple(sorted(name for name, var in user_vars.items() if var.get("required", True))),
            secret_vars=tuple(sorted(name for name, var in user_vars.items() if var.get("secret", False))),
            log_level=row.log_level,
            roots=tuple((root["uri"], root.get("name", "")) for root in row.roots or ()),
            auth=row.auth,
            oauth_client_id=row.oauth_client_id,
            oauth_client_secret=row.oauth_client_secret,
            oauth_scopes=row.oauth_scopes,
            oauth_issuer=row.oauth_issuer,
        )
        return spec.with_fingerprint()

    def with_fingerprint(self) -> "ServerSpec":
        # Everything that changes how we connect or what we offer; not the display texts, nor what a live
        # connection is told of (LIVE_FIELDS). Whether there are roots at all is a capability, declared on connecting.
        skip = ("fingerprint", "display_name", "description", "enabled", *LIVE_FIELDS)
        material = {k: v for k, v in asdict(self).items() if k not in skip}
        material["declares_roots"] = bool(self.roots)
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return ServerSpec(**{**asdict(self), "fingerprint": digest})

    def _uses(self, *fields: str) -> bool:
        values = (*self.args, *(v for _k, v in self.env), *(v for _k, v in self.headers), self.cwd, self.url)
        return any(match.group(1) in fields for value in values for match in USER_PLACEHOLDER_RE.finditer(value))

    @property
    def per_user(self) -> bool:
        """Whether a placeholder or a user variable makes this a server with one connection per user."""
        return bool(self.user_vars) or self._uses("id", "username") or self.auth == "oauth"

    def for_user(self, user: "UserContext") -> "ServerSpec":
        """This spec with the placeholders filled in for ``user``; ConfigError if it cannot be.

        ``{{user.id}}``, ``{{user.username}}`` and ``{{NAME}}`` for each of the server's ``user_vars``
        (an optional one the user has not set: empty) are filled in in args, env values, headers, cwd
        and URL; in the URL, values are percent-encoded. A stdio server also gets each of the user's
        values in its environment under the variable's name, unless its env sets that name itself.
        A required variable without a value is a ConfigError: the server needs setup by this user.

        The username must match SAFE_USERNAME_RE, since it may become a path segment or a whole argument.
        For a stdio server the host creates (see ``user_dirs``) the cwd when it holds a ``{{user.*}}``
        placeholder, and the per-user directory each path argument names.
        """
        if self.auth == "oauth" and not user.oauth_grant:
            raise NeedsSignIn("needs sign-in: the user has not connected their account")
        mine = {name: value for name, value in user.vars if name in self.user_vars and value}
        missing = [name for name in self.required_vars if name not in mine]
        if missing:
            raise ConfigError(f"needs setup: the user has not set {', '.join(missing)}")
        if any(VAR_RE.search(value) for value in mine.values()):
            # It would be expanded from this process's environment at connect time.
            raise ConfigError("a user variable's value holds a ${VAR} reference")
        values = {"user.id": str(user.id), "user.username": user.username}
        values |= {name: mine.get(name, "") for name in self.user_vars}
        if self._uses("username") and not SAFE_USERNAME_RE.fullmatch(user.username):
            raise ConfigError(f"the username {user.username!r} cannot be used for {{{{user.username}}}}")

        def put(match: re.Match[str], encode: bool) -> str:
            value = values.get(match.group(1))
            if value is None:
                return match.group(0)  # not a placeholder of this server: left as written
            return quote(value, safe="") if encode else value

        def fill(text: str, *, encode: bool = False) -> str:
            return PLACEHOLDER_RE.sub(lambda match: put(match, encode), text)

        env = tuple((key, fill(value)) for key, value in self.env)
        if self.transport == "stdio":
            configured = {key for key, _value in self.env}
            env = tuple(sorted((*env, *((name, value) for name, value in mine.items() if name not in configured))))
        spec = replace(
            self,
            args=tuple(fill(arg) for arg in self.args),
            env=env,
            cwd=fill(self.cwd),
            url=fill(self.url, encode=True),
            headers=tuple((key, fill(value)) for key, value in self.headers),
            secrets=tuple(sorted(value for name, value in mine.items() if name in self.secret_vars)),
        )
        if self.auth == "oauth":
            spec = replace(spec, oauth_user_id=user.id, oauth_grant=user.oauth_grant)
        if self.transport == "stdio":
            spec = replace(spec, make_dirs=tuple(str(path) for path in user_dirs(self, fill)))
        return spec.with_fingerprint()


@dataclass(frozen=True)
class UserContext:
    """Whom a per-user connection runs for: the values of the ``{{user.*}}`` placeholders, and the user's
    own values of one server's ``user_vars`` (decrypted; never logged: ``repr`` leaves them out)."""

    id: int
    username: str
    vars: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # For an OAuth server: when the user signed in (blank: they have not, or must again).
    oauth_grant: str = ""

    @classmethod
    def of(cls, user: Any, vars: dict[str, str] | None = None, oauth_grant: str = "") -> "UserContext":
        return cls(
            id=user.pk, username=user.get_username(), vars=tuple(sorted((vars or {}).items())), oauth_grant=oauth_grant
        )


def user_dirs(template: ServerSpec, fill: Any) -> list[Path]:
    """The per-user directories a stdio server needs before it starts, as absolute paths.

    - The cwd, when it holds a placeholder.
    - For each argument holding a placeholder that is a path (it has a "/", is not a URL; an option
      counts by its value after "="): the path up to and including its last segment that holds a
      placeholder. ``workspace/{{user.id}}`` gives ``workspace/42``; ``/srv/{{user.id}}/notes`` gives
      ``/srv/42``. When that segment is the last one and has a dot (``data/{{user.id}}.db``, a file), none.
    Relative paths resolve against the server's cwd, else the worker's working directory, as the
    server's own process will resolve them.
    """
    base = Path.cwd()
    dirs: list[Path] = []
    if USER_PLACEHOLDER_RE.search(template.cwd):
        dirs.append(base / fill(template.cwd))
    cwd = base / fill(template.cwd) if template.cwd else base
    for arg in template.args:
        if not USER_PLACEHOLDER_RE.search(arg):
            continue
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("-") or "/" not in value or "://" in value:
            continue
        segments = value.split("/")
        holding = [i for i, segment in enumerate(segments) if USER_PLACEHOLDER_RE.search(segment)]
        if not holding:
            continue
        last = holding[-1]
        if last == len(segments) - 1 and "." in USER_PLACEHOLDER_RE.sub("", segments[last]):
            continue
        dirs.append(cwd / fill("/".join(segments[: last + 1])))
    return dirs


def expand(value: str, *, where: str) -> str:
    """``${VAR}`` references replaced from the environment; a missing variable is a ConfigError."""
    missing = [name for name in VAR_RE.findall(value) if name not in os.environ]
    if missing:
        raise ConfigError(f"{where} references unset environment variable(s): {', '.join(sorted(set(missing)))}")
    return VAR_RE.sub(lambda match: os.environ[match.group(1)], value)


def expanded_env(spec: ServerSpec) -> dict[str, str]:
    return {key: expand(value, where=f"env {key}") for key, value in spec.env}


def expanded_headers(spec: ServerSpec) -> dict[str, str]:
    return {key: expand(value, where=f"header {key}") for key, value in spec.headers}


def expanded_client_secret(spec: ServerSpec) -> str:
    return expand(spec.oauth_client_secret, where="oauth_client_secret")


def expanded_url(spec: ServerSpec) -> str:
    return expand(spec.url, where="url")
