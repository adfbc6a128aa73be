"""Tool names offered to models: ``<server>__<tool>``, valid for every provider, stable and unique.

Providers accept ``^[A-Za-z0-9_-]{1,64}$`` (stricter than MCP's 128 characters
of any kind). A name that had to be changed to fit, or that would collide with
another, gets a short hash of its server and tool, so the same tool always gets
the same name and two tools never share one.
"""

import hashlib
import re

MAX_LENGTH = 64
SEPARATOR = "__"
INVALID = re.compile(r"[^A-Za-z0-9_-]")


def _suffix(server: str, tool: str, length: int = 6) -> str:
    return hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:length]


def _plain(server: str, tool: str) -> str:
    return f"{server}{SEPARATOR}{INVALID.sub('_', tool)}"


def _hashed(server: str, tool: str, length: int = 6) -> str:
    tail = f"_{_suffix(server, tool, length)}"
    return _plain(server, tool)[: MAX_LENGTH - len(tail)] + tail


def namespace_tools(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Map each (server, tool) to its offered name; deterministic for the same set of pairs.

    A name that fits as it is stays as it is (server names cannot hold "__", so such names never
    collide); only names that had to be changed or shortened carry a hash, lengthened if needed.
    """
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    unchanged = [
        (s, t)
        for s, t in sorted(set(pairs))
        if _plain(s, t) == f"{s}{SEPARATOR}{t}" and len(_plain(s, t)) <= MAX_LENGTH
    ]
    for pair in unchanged:
        names[pair] = _plain(*pair)
        taken.add(names[pair])
    for pair in sorted(set(pairs) - set(unchanged)):
        length = 6
        name = _hashed(*pair, length=length)
        while name in taken:
            length += 2
            name = _hashed(*pair, length=length)
        names[pair] = name
        taken.add(name)
    return names
