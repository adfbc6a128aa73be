"""MCP configuration files: read the seed format and the Claude Desktop / VS Code format, write the latter.

Parsing checks shapes only and keeps ``${VAR}`` references verbatim (they are expanded at connect
time); the model's ``full_clean()`` in the import service does the rest. An export masks env and
header values (``********``) unless asked for them; importing a masked value keeps the stored one.

Beside the Claude Desktop / VS Code keys, an entry may hold ``"access": {"users": [...], "groups": [...]}``
(present: the server is restricted to those usernames and group names) and ``"denied_tools": [...]``.
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from platform_site.exceptions import ValidationFailed

from .models import McpServer, Transport
from .redaction import mask_values
from .validators import validate_server_name

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
    *, name: str, connection: dict, meta: dict, transport_value: object, enabled: bool, where: str
) -> ParsedServer:
    """``connection`` holds command/args/env/cwd/url/headers; ``meta`` holds display_name/description/timeout."""
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
    return ParsedServer(
        name=parsed_name,
        transport=transport,
        display_name=_string(meta, "display_name", where=where),
        description=_string(meta, "description", where=where),
        enabled=enabled,
        timeout_seconds=_timeout(meta, where=where),
        denied_tools=_string_list(meta, "denied_tools", where=where),
        access=_access(meta, where=where),
        command=command,
        args=args,
        env=env,
        cwd=cwd,
        url=url,
        headers=headers,
        original_name=name if parsed_name != name else "",
    )


def _parse_seed_entry(name: str, entry: dict, *, where: str) -> ParsedServer:
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ConfigFileError(f"{where}: 'config' must be an object.")
    enabled = _bool(entry, "enabled", where=where)
    if enabled is None:
        enabled = _bool(entry, "is_active", where=where)
    return _parse_entry(
        name=name,
        connection=config,
        meta=entry,
        transport_value=entry.get("transport_type"),
        enabled=True if enabled is None else enabled,
        where=where,
    )


def _parse_desktop_entry(name: str, entry: dict, *, where: str) -> ParsedServer:
    disabled = _bool(entry, "disabled", where=where)
    return _parse_entry(
        name=name,
        connection=entry,
        meta=entry,
        transport_value=entry.get("type"),
        enabled=not disabled,
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
    """The servers in the Claude Desktop format. Display name, description, timeout, denied tools and
    access are written (as the seed format names the first three) only when set, so the file re-imports
    unchanged. Pass rows with ``allowed_users`` and ``allowed_groups`` prefetched.

    Env and header values are masked unless ``include_secrets``: a file that leaves the machine then
    holds no credentials, and importing it back keeps the stored values."""

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
        entries[server.name] = entry
    return {"mcpServers": entries}
