"""Reads of MCP servers: configuration rows joined with this worker's live host state, and who may use them.

The host is reached through these functions (and services), never from the
interface layer directly. Host errors become the API's domain exceptions here:
why a server is down is told to staff only, and a server's own error texts are
redacted of its secrets.

Access rules (which servers a user may use) are read on every turn, yet change
only in admin or by an import: each process keeps them for
``CONFIG_CACHE_SECONDS``, and every config-change broadcast clears them in every
process at once (``broadcast``).

A server declaring required ``user_vars`` "needs setup" for a user until they set them: it shows as
``needs-setup`` to them, and its tools are not offered to them (``mcp_user_vars_missing``).
"""

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings
from mcp_types import BlobResourceContents, GetPromptResult, Prompt, TextResourceContents

from accounts.models import User
from platform_site.db import run_db
from platform_site.exceptions import NotFound, ServiceUnavailable, UpstreamError, ValidationFailed

from .config import ServerSpec
from .connection import ServerUnavailable
from .credentials import credential_names_for
from .host import (
    McpHost,
    PromptArgumentsMissing,
    ResourceListing,
    ServerRefused,
    UnknownPrompt,
    UnknownServer,
    UnknownTool,
    get_host,
)
from .models import LogLevel, McpServer, McpServerLogEntry
from .oauth import oauth_servers, oauth_sign_in_missing
from .redaction import Redactor, redactor_for
from .results import ServerStatus, ToolInfo

RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = -32602


@dataclass(frozen=True)
class ServerView:
    server: McpServer
    status: ServerStatus
    # Whether the viewer may use it; only staff are shown servers they may not.
    usable: bool = True

    @cached_property
    def redact(self) -> Redactor:
        """Blanks this server's secrets out of a text."""
        return redactor_for(ServerSpec.from_row(self.server))


def mcp_unavailable_error(*, name: str, status: str, reason: str | None) -> ServiceUnavailable:
    """503 ``mcp_server_unavailable``; pass a ``reason`` (already redacted) only when staff may read it."""
    detail = f": {reason}" if reason else ""
    return ServiceUnavailable(
        f"MCP server {name!r} is {status}{detail}",
        code="mcp_server_unavailable",
        details={"status": status, "reason": reason},
    )


# --- who may use which server -----------------------------------------------------------------


@dataclass
class _AccessRules:
    loaded_at: float
    open: frozenset[str]  # the servers everyone may use
    # A restricted server's name -> the ids of the users and of the groups that may use it.
    restricted: dict[str, tuple[frozenset[int], frozenset[int]]]
    # A server's name -> its default approval policy (blank: none) and its per-tool policies.
    policies: dict[str, tuple[str, dict[str, str]]]
    usable: dict[int, frozenset[str]] = field(default_factory=dict)  # by user id, filled as asked


_access: _AccessRules | None = None
_access_generation = 0


def mcp_access_cache_clear() -> None:
    """Forget this process's copy of the access rules (after a config change, here or on another worker)."""
    global _access, _access_generation
    _access_generation += 1
    _access = None


def _access_rules() -> _AccessRules:
    global _access
    rules, now = _access, time.monotonic()
    if rules is not None and now - rules.loaded_at <= settings.CONFIG_CACHE_SECONDS:
        return rules
    generation = _access_generation
    rows = McpServer.objects.values_list("pk", "name", "access_restricted", "approval_default", "tool_policies")
    servers, policies = {}, {}
    for pk, name, restricted, default, tool_policies in rows:
        servers[pk] = (name, restricted)
        policies[name] = (default, dict(tool_policies or {}))
    users: defaultdict[str, set[int]] = defaultdict(set)
    groups: defaultdict[str, set[int]] = defaultdict(set)
    restricted_ids = [pk for pk, (_name, restricted) in servers.items() if restricted]
    if restricted_ids:
        through_users = McpServer.allowed_users.through.objects.filter(mcpserver_id__in=restricted_ids)
        for server_id, user_id in through_users.values_list("mcpserver_id", "user_id"):
            users[servers[server_id][0]].add(user_id)
        through_groups = McpServer.allowed_groups.through.objects.filter(mcpserver_id__in=restricted_ids)
        for server_id, group_id in through_groups.values_list("mcpserver_id", "group_id"):
            groups[servers[server_id][0]].add(group_id)
    rules = _AccessRules(
        loaded_at=now,
        open=frozenset(name for name, restricted in servers.values() if not restricted),
        restricted={
            name: (frozenset(users[name]), frozenset(groups[name]))
            for name, restricted in servers.values()
            if restricted
        },
        policies=policies,
    )
    if generation == _access_generation:  # not cleared while loading: what was read is not older than the change
        _access = rules
    return rules


def mcp_servers_usable_by(*, user: User) -> frozenset[str]:
    """The names of the servers ``user`` may use: open ones, and restricted ones listing them or their groups.

    Staff follow the same rules. In the steady state this costs no query (see the module's docstring); a
    change to someone's groups is seen within ``CONFIG_CACHE_SECONDS``.
    """
    rules = _access_rules()
    if not rules.restricted:
        return rules.open
    usable = rules.usable.get(user.pk)
    if usable is not None:
        return usable
    names = set(rules.open)
    user_groups: set[int] | None = None
    for name, (user_ids, group_ids) in rules.restricted.items():
        if user.pk in user_ids:
            names.add(name)
        elif group_ids:
            if user_groups is None:
                user_groups = set(user.groups.values_list("pk", flat=True))
            if user_groups & group_ids:
                names.add(name)
    usable = rules.usable[user.pk] = frozenset(names)
    return usable


def mcp_tool_policies(*, names: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Each named server's approval settings: its default policy (blank: none) and its per-tool policies.

    Cached with the access rules (see the module's docstring); apply them with ``policies.effective_policy``.
    """
    policies = _access_rules().policies
    return {name: policies.get(name, ("", {})) for name in names}


def mcp_servers_resolve(*, names: list[str], user: User | None = None) -> list[McpServer]:
    """The rows for ``names``, or ValidationFailed ``unknown_mcp_server`` naming those that do not exist.

    With ``user``, a server they may not use is reported as unknown too: to them it does not exist.
    """
    usable = mcp_servers_usable_by(user=user) if user is not None else None
    servers = [s for s in McpServer.objects.filter(name__in=names) if usable is None or s.name in usable]
    missing = sorted(set(names) - {server.name for server in servers})
    if missing:
        raise ValidationFailed(
            f"Unknown MCP server(s): {', '.join(missing)}.", code="unknown_mcp_server", details={"mcp_servers": missing}
        )
    return servers


# --- servers that need a user's own values first ----------------------------------------------


@dataclass
class _SetupRules:
    loaded_at: float
    generation: int
    required: dict[str, frozenset[str]]  # a server's name -> its required user_vars (only servers with some)


_setup: _SetupRules | None = None


def _required_user_vars() -> dict[str, frozenset[str]]:
    """Kept like the access rules, and forgotten with them (``mcp_access_cache_clear``)."""
    global _setup
    rules, now = _setup, time.monotonic()
    if (
        rules is not None
        and rules.generation == _access_generation
        and now - rules.loaded_at <= settings.CONFIG_CACHE_SECONDS
    ):
        return rules.required
    generation = _access_generation
    required = {}
    for name, user_vars in McpServer.objects.values_list("name", "user_vars"):
        names = frozenset(var for var, spec in (user_vars or {}).items() if spec.get("required", True))
        if names:
            required[name] = names
    if generation == _access_generation:
        _setup = _SetupRules(loaded_at=now, generation=generation, required=required)
    return required


def mcp_user_vars_missing(*, user: User) -> dict[str, list[str]]:
    """The servers that need setup by ``user``, each with the required user_vars they have not set.

    No query while no server declares a required variable; else one (for ``user``'s rows of those servers).
    """
    required = _required_user_vars()
    if not required:
        return {}
    have = credential_names_for(user_id=user.pk, server_names=list(required))
    missing = {name: sorted(names - have.get(name, frozenset())) for name, names in required.items()}
    return {name: names for name, names in sorted(missing.items()) if names}


def mcp_servers_needing_setup(*, user: User) -> frozenset[str]:
    """The servers ``user`` must set values for before their tools are offered to them (see above)."""
    return frozenset(mcp_user_vars_missing(user=user))


def mcp_needs_setup_error(*, missing: dict[str, list[str]]) -> ValidationFailed:
    """400 ``mcp_server_needs_setup``: ``missing`` maps each server to the variables the user has not set."""
    what = "; ".join(f"{name}: {', '.join(names)}" for name, names in sorted(missing.items()))
    return ValidationFailed(
        f"MCP server(s) need your setup first (PUT /api/mcp/servers/{{name}}/credentials): {what}.",
        code="mcp_server_needs_setup",
        details={"missing": missing},
    )


@dataclass
class _SignInRules:
    loaded_at: float
    generation: int
    servers: frozenset[str]  # the servers each user signs in to (auth = oauth)


_sign_in: _SignInRules | None = None


def _oauth_servers() -> frozenset[str]:
    """Kept like the access rules, and forgotten with them (``mcp_access_cache_clear``)."""
    global _sign_in
    rules, now = _sign_in, time.monotonic()
    if (
        rules is not None
        and rules.generation == _access_generation
        and now - rules.loaded_at <= settings.CONFIG_CACHE_SECONDS
    ):
        return rules.servers
    generation = _access_generation
    servers = oauth_servers()
    if generation == _access_generation:
        _sign_in = _SignInRules(loaded_at=now, generation=generation, servers=servers)
    return servers


def mcp_servers_needing_sign_in(*, user: User) -> frozenset[str]:
    """The OAuth servers ``user`` has not connected their account to (or must again): "needs-sign-in" to them,
    and their tools are not offered to them. No query while no server uses OAuth sign-in."""
    servers = _oauth_servers()
    return oauth_sign_in_missing(user_id=user.pk, server_names=servers) if servers else frozenset()


def mcp_needs_sign_in_error(*, servers: list[str]) -> ValidationFailed:
    """400 ``mcp_server_needs_sign_in``: the user must connect their account to these servers first."""
    return ValidationFailed(
        f"MCP server(s) need you to sign in first (POST /api/mcp/servers/{{name}}/oauth/connect): "
        f"{', '.join(sorted(servers))}.",
        code="mcp_server_needs_sign_in",
        details={"servers": sorted(servers)},
    )


def mcp_server_for_oauth(*, name: str, user: User) -> McpServer:
    """The OAuth server ``user`` signs in to: NotFound unless they may use it, ValidationFailed ``not_oauth``
    if it does not use per-user OAuth."""
    row = McpServer.objects.filter(name=name).first()
    if row is None or row.name not in mcp_servers_usable_by(user=user):
        raise NotFound(f"Unknown MCP server {name!r}.", code="unknown_mcp_server")
    if row.auth != "oauth":
        raise ValidationFailed(f"MCP server {name!r} does not use OAuth sign-in.", code="not_oauth")
    return row


def mcp_server_for_credentials(*, name: str, user: User) -> McpServer:
    """The server ``user`` sets their own values for: NotFound unless they may use it (staff too, since their
    own turns follow the same rules), ValidationFailed ``no_user_vars`` if it declares none."""
    row = McpServer.objects.filter(name=name).first()
    if row is None or row.name not in mcp_servers_usable_by(user=user):
        raise NotFound(f"Unknown MCP server {name!r}.", code="unknown_mcp_server")
    if not row.user_vars:
        raise ValidationFailed(f"MCP server {name!r} has no user variables to set.", code="no_user_vars")
    return row


def _seen_by(
    name: str, status: ServerStatus, needing: frozenset[str], signing: frozenset[str] = frozenset()
) -> ServerStatus:
    # The host knows a per-user server only as "per-user"; to a user who has not set it up, it needs setup,
    # and to one who has not signed in (OAuth), it needs sign-in.
    if status.status == "per-user" and name in needing:
        return ServerStatus(name=name, status="needs-setup")
    if status.status == "per-user" and name in signing:
        return ServerStatus(name=name, status="needs-sign-in")
    return status


async def mcp_server_views(*, user: User) -> list[ServerView]:
    """Every server for staff (each marked usable or not for them); for others only those they may use."""

    def read() -> tuple[dict[str, McpServer], frozenset[str], frozenset[str], frozenset[str]]:
        rows = {row.name: row for row in McpServer.objects.all()}
        return (
            rows,
            mcp_servers_usable_by(user=user),
            mcp_servers_needing_setup(user=user),
            mcp_servers_needing_sign_in(user=user),
        )

    rows, usable, needing, signing = await run_db(read)
    statuses = {status.name: status for status in await get_host().astatuses()}
    return [
        ServerView(
            server=row,
            status=_seen_by(name, statuses.get(name) or ServerStatus(name=name, status="connecting"), needing, signing),
            usable=name in usable,
        )
        for name, row in sorted(rows.items())
        if user.is_staff or name in usable
    ]


async def mcp_server_view(*, name: str, user: User | None = None) -> ServerView:
    """One server; NotFound if there is none, or (with ``user``, not staff) if they may not use it."""

    def read() -> tuple[McpServer | None, bool, frozenset[str], frozenset[str]]:
        row = McpServer.objects.filter(name=name).first()
        if user is None:
            return row, True, frozenset(), frozenset()
        usable = row is not None and row.name in mcp_servers_usable_by(user=user)
        needing = mcp_servers_needing_setup(user=user) if row is not None and row.user_vars else frozenset()
        signing = mcp_servers_needing_sign_in(user=user) if row is not None and row.auth == "oauth" else frozenset()
        return row, usable, needing, signing

    row, usable, needing, signing = await run_db(read)
    if row is None or not (usable or (user is not None and user.is_staff)):
        raise NotFound(f"Unknown MCP server {name!r}.", code="unknown_mcp_server")
    statuses = {status.name: status for status in await get_host().astatuses()}
    status = statuses.get(name) or ServerStatus(name=name, status="connecting")
    return ServerView(server=row, status=_seen_by(name, status, needing, signing), usable=usable)


def mcp_host_statuses() -> dict[str, ServerStatus]:
    """Each server's state in this worker's host, by name; blocks (sync callers: admin). Unscoped: staff only."""
    return {status.name: status for status in get_host().statuses()}


def mcp_server_tools_offered(*, name: str) -> list[ToolInfo]:
    """The tools this worker's host offers models for the shared server ``name``; blocks (admin). Staff only."""
    return get_host().tools([name])


async def mcp_host_summary(*, user: User) -> dict[str, Any]:
    """Counts of servers by state and of their tools: for staff all servers, for others those they may use."""
    statuses = await get_host().astatuses()

    def read() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        return (
            mcp_servers_usable_by(user=user),
            mcp_servers_needing_setup(user=user),
            mcp_servers_needing_sign_in(user=user),
        )

    usable, needing, signing = await run_db(read)
    if not user.is_staff:
        statuses = [status for status in statuses if status.name in usable]
    statuses = [_seen_by(status.name, status, needing, signing) for status in statuses]
    counts = dict.fromkeys(
        ("connected", "connecting", "error", "disabled", "per-user", "needs-setup", "needs-sign-in"), 0
    )
    for status in statuses:
        counts[status.status] += 1
    return {"servers": counts, "total_servers": len(statuses), "total_tools": sum(s.tool_count for s in statuses)}


async def mcp_tools(*, user: User, server: str | None = None) -> list[ToolInfo]:
    """The tools offered to models: for staff all of them, for others those of the servers they may use.

    Never those of a server that needs the caller's setup (a 400 ``mcp_server_needs_setup`` when asked by name).
    """
    host = get_host()
    if server is None:
        await host.await_ready()

        def read() -> tuple[frozenset[str] | None, frozenset[str]]:
            rules = _access_rules()
            every = None if user.is_staff else mcp_servers_usable_by(user=user)
            needing = mcp_servers_needing_setup(user=user) | mcp_servers_needing_sign_in(user=user)
            if every is None and needing:
                every = rules.open | frozenset(rules.restricted)
            return every, needing

        chosen, needing = await run_db(read)
        # Per-user servers' tools are the caller's own: listing them starts the caller's connections.
        if chosen is None:
            return await host.atools(user=user)
        return await host.atools(sorted(chosen - needing), user=user)
    view = await mcp_server_view(name=server, user=user)
    if view.status.status == "needs-setup":
        missing = await run_db(mcp_user_vars_missing, user=user)
        raise mcp_needs_setup_error(missing={server: missing.get(server, [])})
    if view.status.status == "needs-sign-in":
        raise mcp_needs_sign_in_error(servers=[server])
    if view.status.status == "per-user":
        view = ServerView(server=view.server, status=await host.auser_status(server, user), usable=view.usable)
    elif view.status.status == "connecting":
        await host.await_ready()
        view = await mcp_server_view(name=server, user=user)
    if view.status.status != "connected":
        reason = view.status.last_error if user.is_staff else None
        raise mcp_unavailable_error(name=server, status=view.status.status, reason=reason)
    return await host.atools([server], user=user)


async def _mcp_read[T](*, user: User, server: str, read: Callable[[McpHost], Awaitable[T]]) -> T:
    """``read(host)``: a resources/prompts request to one server, with host errors mapped to API errors.

    NotFound for a server ``user`` may not use (``unknown_mcp_server``) or a thing it does not have
    (``mcp_not_found``); ValidationFailed when ``user`` must set it up or sign in first, or the server finds
    the parameters invalid; ServiceUnavailable ``mcp_server_unavailable``; UpstreamError for any other error
    of the server's, or ``mcp_timeout``.
    """
    view = await mcp_server_view(name=server, user=user)
    if view.status.status == "needs-setup":
        missing = await run_db(mcp_user_vars_missing, user=user)
        raise mcp_needs_setup_error(missing={server: missing.get(server, [])})
    if view.status.status == "needs-sign-in":
        raise mcp_needs_sign_in_error(servers=[server])
    try:
        return await read(get_host())
    except UnknownServer as exc:
        raise NotFound(f"Unknown MCP server {server!r}.", code="unknown_mcp_server") from exc
    except ServerUnavailable as exc:
        reason = exc.reason if user.is_staff else None
        raise mcp_unavailable_error(name=server, status=exc.status, reason=reason) from exc
    except ServerRefused as exc:
        # The server's own words: they may quote what it was configured with.
        message = view.redact(exc.message)
        if exc.code == RESOURCE_NOT_FOUND or "not found" in message.lower() or "unknown" in message.lower():
            raise NotFound(message, code="mcp_not_found") from exc
        if exc.code == INVALID_PARAMS:
            raise ValidationFailed(message, code="mcp_invalid_params") from exc
        raise UpstreamError(message, details={"mcp_code": exc.code}) from exc
    except TimeoutError as exc:
        raise UpstreamError(f"MCP server {server!r} did not answer in time.", code="mcp_timeout") from exc


async def mcp_resources_list(*, user: User, server: str) -> ResourceListing:
    """``server``'s resources and resource templates, as ``user`` may see them (``_mcp_read`` errors)."""
    return await _mcp_read(user=user, server=server, read=lambda host: host.alist_resources(server, user=user))


async def mcp_resource_read(*, user: User, server: str, uri: str) -> list[TextResourceContents | BlobResourceContents]:
    """The contents of the resource at ``uri`` on ``server``; NotFound ``mcp_not_found`` when there is none."""
    return await _mcp_read(user=user, server=server, read=lambda host: host.aread_resource(server, uri, user=user))


async def mcp_prompts_list(*, user: User, server: str) -> list[Prompt]:
    """``server``'s prompts (none when it offers no prompts)."""
    return await _mcp_read(user=user, server=server, read=lambda host: host.alist_prompts(server, user=user))


async def mcp_prompt_get(*, user: User, server: str, prompt: str, arguments: dict[str, str]) -> GetPromptResult:
    """``prompt`` filled in with ``arguments``: NotFound ``unknown_prompt`` when the server has no such prompt,
    ValidationFailed when a required argument is missing."""

    async def get(host: McpHost) -> GetPromptResult:
        try:
            return await host.aget_prompt(server, prompt, arguments, user=user)
        except UnknownPrompt as exc:
            raise NotFound(f"MCP server {server!r} has no prompt {prompt!r}.", code="unknown_prompt") from exc
        except PromptArgumentsMissing as exc:
            raise ValidationFailed(
                f"Missing prompt argument(s): {', '.join(exc.missing)}.", details={"arguments": exc.missing}
            ) from exc

    return await _mcp_read(user=user, server=server, read=get)


def mcp_server_log(*, name: str, level: str = "", limit: int = 100) -> list[McpServerLogEntry]:
    """``name``'s log messages at ``level`` or above (blank: all), newest first; NotFound if no such server."""
    if not McpServer.objects.filter(name=name).exists():
        raise NotFound(f"Unknown MCP server {name!r}.", code="unknown_mcp_server")
    entries = McpServerLogEntry.objects.filter(server=name)
    if level:
        entries = entries.filter(level__in=LogLevel.values[LogLevel.values.index(level) :])
    return list(entries.order_by("-created_at", "-id")[:limit])


__all__ = [
    "ServerView",
    "UnknownTool",
    "mcp_access_cache_clear",
    "mcp_host_statuses",
    "mcp_host_summary",
    "mcp_needs_setup_error",
    "mcp_needs_sign_in_error",
    "mcp_prompt_get",
    "mcp_prompts_list",
    "mcp_resource_read",
    "mcp_resources_list",
    "mcp_server_for_credentials",
    "mcp_server_for_oauth",
    "mcp_server_log",
    "mcp_server_tools_offered",
    "mcp_server_view",
    "mcp_server_views",
    "mcp_servers_needing_setup",
    "mcp_servers_needing_sign_in",
    "mcp_servers_resolve",
    "mcp_servers_usable_by",
    "mcp_tools",
    "mcp_unavailable_error",
    "mcp_user_vars_missing",
]
