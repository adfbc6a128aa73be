"""JSON from clients, with a nesting limit: the one parser for request bodies and WebSocket frames.

Python's json module parses nested arrays and objects recursively, so a body of
``[[[[...`` a few thousand levels deep raised RecursionError (a 500, a closed
WebSocket) and anything that walks the value afterwards could do the same.
Bodies deeper than ``JSON_MAX_DEPTH`` are refused before they are parsed.
"""

import codecs
import json
import re
from itertools import accumulate
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils.json import strict_constant

# A JSON string, escapes included; possessive, so a stray quote costs one linear scan, not backtracking.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
# Openers to +1 and closers to -1 (0xff read as a signed byte), so the running sum is the depth.
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_SLICE = 64 * 1024


class JsonTooDeep(ValueError):
    pass


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether UTF-8 JSON nests arrays and objects deeper than ``max_depth``, without recursion.

    Every step runs in C (a regex, ``translate``, ``accumulate``): tens of milliseconds at most for 1 MiB,
    and a body with no more than ``max_depth`` opening brackets in all is passed by two counts.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    steps = memoryview(_STRING.sub(b"", data).translate(_DEPTH_STEPS, _NOT_A_BRACKET)).cast("b")
    depth = 0
    for start in range(0, len(steps), _SLICE):  # in slices, so a deep body stops at its first one
        depths = list(accumulate(steps[start : start + _SLICE], initial=depth))
        if max(depths) > max_depth:
            return True
        depth = depths[-1]
    return False


def json_loads(data: bytes | str) -> Any:
    """Parse strict JSON (no NaN or Infinity); ``JsonTooDeep`` past the depth limit, ``ValueError`` if invalid."""
    raw = data.encode() if isinstance(data, str) else data
    max_depth = settings.JSON_MAX_DEPTH
    if json_depth_exceeds(raw, max_depth):
        raise JsonTooDeep(f"JSON may nest arrays and objects at most {max_depth} levels deep.")
    return json.loads(raw, parse_constant=strict_constant)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser over ``json_loads``: too deep is 400 ``invalid_json``, malformed stays ``parse_error``."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]  # DRF 3.18, not in its stubs
        data = stream.read()
        try:
            if codecs.lookup(encoding).name != "utf-8":
                data = data.decode(encoding).encode()
            return json_loads(data)
        except JsonTooDeep as exc:
            raise ParseError(str(exc), code="invalid_json") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
