"""What a connection needs to know about a server, taken from its McpServer row.

A ``ServerSpec`` is an immutable snapshot of a row; its ``fingerprint`` tells a
host whether a saved row changed anything that needs a reconnect. ``${VAR}``
references in env values, headers and the URL are expanded from the process
environment at connect time, never stored expanded.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field

from .models import McpServer

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The row cannot be turned into a connection (e.g. a ${VAR} that is not set)."""


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
    display_name: str = ""
    description: str = ""
    enabled: bool = True
    fingerprint: str = field(default="", compare=False)

    @classmethod
    def from_row(cls, row: McpServer) -> "ServerSpec":
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
            display_name=row.display_name,
            description=row.description,
            enabled=row.enabled,
        )
        return spec.with_fingerprint()

    def with_fingerprint(self) -> "ServerSpec":
        # Everything that changes how we connect or what we offer; not the display texts.
        material = {
            k: v for k, v in asdict(self).items() if k not in ("fingerprint", "display_name", "description", "enabled")
        }
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return ServerSpec(**{**asdict(self), "fingerprint": digest})


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


def expanded_url(spec: ServerSpec) -> str:
    return expand(spec.url, where="url")
