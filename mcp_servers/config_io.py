"""MCP configuration files: read the seed format and the Claude Desktop / VS Code format, write the latter.

Parsing checks shapes only and keeps ``${VAR}`` references verbatim (they are expanded at connect
time); the model's ``full_clean()`` in the import service does the rest. An export masks env and
header values (``********``) unless asked for them; importing a masked value keeps the stored one.

Beside the Claude Desktop / VS Code keys, an entry may hold ``"access": {"users": [...], "groups": [...]}``
(present: the server is restricted to those usernames and group names), ``"denied_tools": [...]``,
``"approval": {"default"?: policy, "tools"?: {tool: policy}}``, ``"user_vars": {NAME: {...}}`` and
``"roots": [{"uri": "file:///...", "name"?: "..."}]`` (what the host answers on roots/list), and for an
HTTP server ``"auth"`` (``oauth``, ``client_credentials``) with ``"oauth_client_id"``, ``"oauth_client_secret"``
(masked on export like env values), ``"oauth_scopes"`` and ``"oauth_issuer"``. A key
a format does not define is an error; the client-side keys of VS Code's entries (``envFile``, ``dev``,
``gallery``, ``version``) are accepted and reported as ignored.
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from platform_site.exceptions import ValidationFailed

from .models import AuthMode, McpServer, Transport
from .redaction import mask_values
from .validators import POLICIES, USER_VAR_KEYS, USER_VAR_NAME_RE, validate_roots, validate_server_name

NAME_MAX_LENGTH = 40
DEFAULT_TIMEOUT_SECONDS = 30

TRANSPORT_ALIASES = {
    "stdio": Transport.STDIO,
    "sse": Transport.SSE,
    "streamable_http": Transport.STREAMABLE_HTTP,
    "streamable-http": Transport.STREAMABLE_HTTP,
    "streamablehttp": Transport.STREAMABLE_HTTP,
    "http": Transport.STREAMABLE_HTTP,
}
EXPORT_TYPES = {Transport.STREAMABLE_HTTP: "http", Transport.SSE: "sse"}


class ConfigFileError(ValidationFailed):
    """The configuration file (or one of its entries) cannot be imported."""

    code = "invalid_mcp_config"


@dataclass(frozen=True)
class ServerAccess:
    """Who may use a restricted server, by username and group name."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


ACCESS_KEYS = ("users", "groups")
APPROVAL_KEYS = ("default", "tools")

# The keys this platform reads in an entry of each format.
CONNECTION_KEYS = frozenset({"command", "args", "env", "cwd", "url", "headers"})
OAUTH_KEYS = ("oauth_client_id", "oauth_client_secret", "oauth_scopes", "oauth_issuer")
PLATFORM_KEYS = frozenset(
    {"display_name", "description", "timeout", "denied_tools", "access", "approval", "user_vars", "roots"}
) | {"auth", *OAUTH_KEYS}
DESKTOP_KEYS = CONNECTION_KEYS | PLATFORM_KEYS | {"type", "disabled"}
SEED_KEYS = PLATFORM_KEYS | {"transport_type", "config", "enabled", "is_active"}
# Keys VS Code's mcp.json defines that only mean something on the client: a local env file, its
# development mode (watch, debug), and where a server was installed from. Accepted and reported.
CLIENT_ONLY_KEYS = frozenset({"envFile", "dev", "gallery", "version"})


@dataclass(frozen=True)
class ParsedServer:
    """One entry of a configuration file, as McpServer field values."""

    name: str
    transport: str
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    display_name: str = ""
    description: str = ""
    enabled: bool = True
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    denied_tools: list[str] = field(default_factory=list)
    access: ServerAccess | None = None  # None: open to everyone
    approval_default: str = ""  # blank: no server default (allow)
    tool_policies: dict[str, str] = field(default_factory=dict)
    user_vars: dict[str, dict[str, object]] = field(default_factory=dict)
    roots: list[dict[str, str]] = field(default_factory=list)
    auth: str = AuthMode.NONE
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    oauth_scopes: str = ""
    oauth_issuer: str = ""
    # Client-only keys of the entry that were accepted and not used (CLIENT_ONLY_KEYS).
    ignored_keys: tuple[str, ...] = ()
    # The key in the file when it had to be changed into a valid server name.
    original_name: str = ""

    @property
    def renamed(self) -> bool:
        return bool(self.original_name) and self.original_name != self.name


def sanitize_server_name(raw: str) -> str:
    """A valid server name made from ``raw``: invalid characters become '-', runs collapse, ends trimmed."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", raw)
    name = re.sub(r"-{2,}", "-", name)
    name = re.sub(r"_{2,}", "_", name)
    name = name.strip("-_")[:NAME_MAX_LENGTH].strip("-_")
    return name


def _is_valid_name(name: str) -> bool:
    if len(name) > NAME_MAX_LENGTH:
        return False
    try:
        validate_server_name(name)
    except ValidationError:
        return False
    return True


def _string(entry: dict, key: str, *, where: str) -> str:
    value = entry.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigFileError(f"{where}: {key!r} must be a string.")
    return value


def _string_list(entry: dict, key: str, *, where: str) -> list[str]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigFileError(f"{where}: {key!r} must be a list of strings.")
    return list(value)


def _string_map(entry: dict, key: str, *, where: str) -> dict[str, str]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ConfigFileError(f"{where}: {key!r} must be an object mapping names to string values.")
    return dict(value)


def _bool(entry: dict, key: str, *, where: str) -> bool | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ConfigFileError(f"{where}: {key!r} must be true or false.")
    return value


def _timeout(entry: dict, *, where: str) -> int:
    value = entry.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    # bool is an int in Python; "timeout": true is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigFileError(f"{where}: 'timeout' must be a number of seconds.")
    if value <= 0:
        raise ConfigFileError(f"{where}: 'timeout' must be greater than zero.")
    return math.ceil(value)


def _access(entry: dict, *, where: str) -> ServerAccess | None:
    value = entry.get("access")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: 'access' must be an object with 'users' and 'groups' lists.")
    unknown = sorted(set(value) - set(ACCESS_KEYS))
    if unknown:
        raise ConfigFileError(f"{where}: unknown key(s) in 'access': {', '.join(unknown)} (use 'users', 'groups').")
    users = _string_list(value, "users", where=f"{where} access")
    groups = _string_list(value, "groups", where=f"{where} access")
    return ServerAccess(users=tuple(dict.fromkeys(users)), groups=tuple(dict.fromkeys(groups)))


def _check_keys(
    entry: dict, known: frozenset[str], *, client_only: frozenset[str] = frozenset(), where: str
) -> tuple[str, ...]:
    """The entry's ``client_only`` keys, to be ignored; any other key the format does not define is an error."""
    unknown = sorted(key for key in entry if key not in known and key not in client_only)
    if unknown:
        raise ConfigFileError(f"{where}: unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))}).")
    return tuple(sorted(key for key in entry if key in client_only))


def _policy(value: object, *, where: str) -> str:
    if not isinstance(value, str) or value not in POLICIES:
        raise ConfigFileError(f"{where}: policy {value!r} is not one of {', '.join(POLICIES)}.")
    return value


def _approval(entry: dict, *, where: str) -> tuple[str, dict[str, str]]:
    """The server's default policy (blank: none) and its per-tool policies."""
    value = entry.get("approval")
    if value is None:
        return "", {}
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: 'approval' must be an object with 'default' and 'tools'.")
    unknown = sorted(set(value) - set(APPROVAL_KEYS))
    if unknown:
        raise ConfigFileError(f"{where}: unknown key(s) in 'approval': {', '.join(unknown)} (use 'default', 'tools').")
    default = value.get("default")
    default = "" if default in (None, "") else _policy(default, where=f"{where} approval 'default'")
    tools = value.get("tools")
    if tools is None:
        return default, {}
    if not isinstance(tools, dict):
        raise ConfigFileError(f"{where}: approval 'tools' must be an object mapping tool names to a policy.")
    if "" in tools:
        raise ConfigFileError(f"{where}: approval 'tools' has an empty tool name.")
    return default, {tool: _policy(policy, where=f"{where} approval tool {tool!r}") for tool, policy in tools.items()}


def _user_vars(entry: dict, *, where: str) -> dict[str, dict[str, object]]:
    value = entry.get("user_vars")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: 'user_vars' must be an object mapping variable names to their description.")
    parsed: dict[str, dict[str, object]] = {}
    for name, spec in value.items():
        if not USER_VAR_NAME_RE.match(name):
            raise ConfigFileError(
                f"{where}: user_vars {name!r} is not a variable name (letters, digits and _, not a digit first)."
            )
        if not isinstance(spec, dict):
            raise ConfigFileError(f"{where}: user_vars {name!r} must be an object.")
        unknown = sorted(set(spec) - set(USER_VAR_KEYS))
        if unknown:
            raise ConfigFileError(
                f"{where}: unknown key(s) in user_vars {name!r}: {', '.join(unknown)} "
                f"(use {', '.join(repr(key) for key in USER_VAR_KEYS)})."
            )
        for key, kind in USER_VAR_KEYS.items():
            if key in spec and type(spec[key]) is not kind:
                raise ConfigFileError(
                    f"{where}: user_vars {name!r} {key!r} must be {'true or false' if kind is bool else 'a string'}."
                )
        parsed[name] = dict(spec)
    return parsed


def _roots(entry: dict, *, where: str) -> list[dict[str, str]]:
    value = entry.get("roots")
    if value is None:
        return []
    try:
        validate_roots(value)
    except ValidationError as exc:
        raise ConfigFileError(f"{where}: roots: {' '.join(exc.messages)}") from exc
    return [dict(root) for root in value]


def _transport(value: object, *, command: str, url: str, where: str) -> str:
    if value is None:
        if command and url:
            raise ConfigFileError(f"{where}: has both 'command' and 'url'; say which with 'type'.")
        if command:
            return Transport.STDIO
        if url:
            return Transport.STREAMABLE_HTTP
        raise ConfigFileError(f"{where}: needs a 'command' (stdio) or a 'url' (HTTP).")
    if not isinstance(value, str) or value.lower() not in TRANSPORT_ALIASES:
        raise ConfigFileError(f"{where}: unknown transport {value!r} (use stdio, http, streamable_http or sse).")
    transport = TRANSPORT_ALIASES[value.lower()]
    if transport == Transport.STDIO and not command.strip():
        raise ConfigFileError(f"{where}: a stdio server needs a 'command'.")
    if transport != Transport.STDIO and not url.strip():
        raise ConfigFileError(f"{where}: an HTTP server needs a 'url'.")
    return transport


def _parse_entry(
    *,
    name: str,
    connection: dict,
    meta: dict,
    transport_value: object,
    enabled: bool,
    ignored_keys: tuple[str, ...],
    where: str,
) -> ParsedServer:
    """``connection`` holds command/args/env/cwd/url/headers; ``meta`` the platform's keys (PLATFORM_KEYS)."""
    command = _string(connection, "command", where=where)
    args = _string_list(connection, "args", where=where)
    env = _string_map(connection, "env", where=where)
    cwd = _string(connection, "cwd", where=where)
    url = _string(connection, "url", where=where)
    headers = _string_map(connection, "headers", where=where)
    transport = _transport(transport_value, command=command, url=url, where=where)
    # Only what the transport uses is kept, so an export lists the same fields and round-trips.
    if transport == Transport.STDIO:
        url, headers = "", {}
    else:
        command, args, env, cwd = "", [], {}, ""
    parsed_name = name if _is_valid_name(name) else sanitize_server_name(name)
    if not parsed_name:
        raise ConfigFileError(f"{where}: the name cannot be turned into a valid server name.")
    approval_default, tool_policies = _approval(meta, where=where)
    auth = _string(meta, "auth", where=where) or AuthMode.NONE
    if auth not in AuthMode.values:
        raise ConfigFileError(f"{where}: 'auth' must be one of {', '.join(AuthMode.values)}.")
    return ParsedServer(
        name=parsed_name,
        transport=transport,
        display_name=_string(meta, "display_name", where=where),
        description=_string(meta, "description", where=where),
        enabled=enabled,
        timeout_seconds=_timeout(meta, where=where),
        denied_tools=_string_list(meta, "denied_tools", where=where),
        access=_access(meta, where=where),
        approval_default=approval_default,
        tool_policies=tool_policies,
        user_vars=_user_vars(meta, where=where),
        roots=_roots(meta, where=where),
        auth=auth,
        **{key: _string(meta, key, where=where) for key in OAUTH_KEYS},
        ignored_keys=ignored_keys,
        command=command,
        args=args,
        env=env,
        cwd=cwd,
        url=url,
        headers=headers,
        original_name=name if parsed_name != name else "",
    )


def _parse_seed_entry(name: str, entry: dict, *, where: str) -> ParsedServer:
    _check_keys(entry, SEED_KEYS, where=where)
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ConfigFileError(f"{where}: 'config' must be an object.")
    _check_keys(config, CONNECTION_KEYS, where=f"{where} config")
    enabled = _bool(entry, "enabled", where=where)
    if enabled is None:
        enabled = _bool(entry, "is_active", where=where)
    return _parse_entry(
        name=name,
        connection=config,
        meta=entry,
        transport_value=entry.get("transport_type"),
        enabled=True if enabled is None else enabled,
        ignored_keys=(),
        where=where,
    )


def _parse_desktop_entry(name: str, entry: dict, *, where: str) -> ParsedServer:
    ignored = _check_keys(entry, DESKTOP_KEYS, client_only=CLIENT_ONLY_KEYS, where=where)
    disabled = _bool(entry, "disabled", where=where)
    return _parse_entry(
        name=name,
        connection=entry,
        meta=entry,
        transport_value=entry.get("type"),
        enabled=not disabled,
        ignored_keys=ignored,
        where=where,
    )


def mcp_config_parse(data: object) -> list[ParsedServer]:
    """The servers of a decoded configuration file, in file order. Raises ConfigFileError."""
    if not isinstance(data, dict):
        raise ConfigFileError("The configuration must be a JSON object.")
    formats = (
        ("mcp_servers", _parse_seed_entry),
        ("mcpServers", _parse_desktop_entry),
        ("servers", _parse_desktop_entry),
    )
    found = next(((key, parser) for key, parser in formats if key in data), None)
    if found is None:
        raise ConfigFileError("Expected a top-level 'mcpServers', 'servers' or 'mcp_servers' object.")
    key, parse_entry = found
    entries = data[key]
    if not isinstance(entries, dict):
        raise ConfigFileError(f"{key!r} must be an object mapping server names to their configuration.")

    servers: list[ParsedServer] = []
    sources: dict[str, str] = {}
    for name, entry in entries.items():
        where = f"Server {name!r}"
        if not isinstance(entry, dict):
            raise ConfigFileError(f"{where}: the entry must be an object.")
        server = parse_entry(name, entry, where=where)
        if server.name in sources:
            raise ConfigFileError(
                f"{where}: becomes {server.name!r}, which is already the name of {sources[server.name]!r}."
            )
        sources[server.name] = name
        servers.append(server)
    return servers


def mcp_config_export(servers: Iterable[McpServer], *, include_secrets: bool = False) -> dict:
    """The servers in the Claude Desktop format. Display name, description, timeout, denied tools,
    access, approval, user variables, roots and OAuth settings are written (as the seed format names the
    first three) only when set, so the file re-imports unchanged. Pass rows with ``allowed_users`` and
    ``allowed_groups`` prefetched.

    Env and header values and the OAuth client secret are masked unless ``include_secrets``: a file that
    leaves the machine then holds no credentials, and importing it back keeps the stored values."""

    def values(mapping: dict[str, str]) -> dict[str, str]:
        return dict(mapping) if include_secrets else mask_values(mapping)

    entries: dict[str, dict] = {}
    for server in servers:
        entry: dict[str, object]
        if server.transport == Transport.STDIO:
            entry = {"command": server.command, "args": list(server.args), "env": values(server.env)}
            if server.cwd:
                entry["cwd"] = server.cwd
        else:
            entry = {
                "type": EXPORT_TYPES[Transport(server.transport)],
                "url": server.url,
                "headers": values(server.headers),
            }
        if not server.enabled:
            entry["disabled"] = True
        if server.display_name:
            entry["display_name"] = server.display_name
        if server.description:
            entry["description"] = server.description
        if server.timeout_seconds != DEFAULT_TIMEOUT_SECONDS:
            entry["timeout"] = server.timeout_seconds
        if server.denied_tools:
            entry["denied_tools"] = list(server.denied_tools)
        if server.access_restricted:
            entry["access"] = {
                "users": sorted(user.get_username() for user in server.allowed_users.all()),
                "groups": sorted(group.name for group in server.allowed_groups.all()),
            }
        approval: dict[str, object] = {}
        if server.approval_default:
            approval["default"] = server.approval_default
        if server.tool_policies:
            approval["tools"] = dict(server.tool_policies)
        if approval:
            entry["approval"] = approval
        if server.user_vars:
            entry["user_vars"] = {name: dict(spec) for name, spec in server.user_vars.items()}
        if server.roots:
            entry["roots"] = [dict(root) for root in server.roots]
        if server.auth != AuthMode.NONE:
            entry["auth"] = server.auth
            entry |= {key: getattr(server, key) for key in OAUTH_KEYS if getattr(server, key)}
            if server.oauth_client_secret:
                entry["oauth_client_secret"] = values({"secret": server.oauth_client_secret})["secret"]
        entries[server.name] = entry
    return {"mcpServers": entries}
