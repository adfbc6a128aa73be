"""Server-Sent Events read straight off a streamed HTTP response, for the adapters' streaming hot path.

The SDKs build a pydantic model for every streamed event: most of a stream's
CPU with OpenAI's, a third of it with Anthropic's. Adapters that read the few
fields they need from the raw events skip that; the SDKs still make the request.
"""

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import cast

import httpx2

# How long the rest of a body whose last event has arrived may take before its connection is given up (as OpenAI's SDK).
DRAIN_SECONDS = 0.1


class SSEDecoder:
    """Turns a body's bytes, in whatever pieces they arrive, into (event name, data) pairs.

    Lines end at CR, LF or CRLF only (unlike str.splitlines, which also breaks at
    U+2028 or U+0085 inside JSON text). Data lines of one event are joined with
    newlines; comments, ``id`` and ``retry`` are skipped; an event that the body
    ends before its blank line is dropped, as the SSE spec and the SDKs do.
    """

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[bytes] = []
        # The start of a line whose end has not arrived yet; a trailing CR waits here for a possible LF.
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if b"\n" not in chunk and b"\r" not in chunk:
            self._partial.append(chunk)  # joined once, when the line ends, however many pieces it came in
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        lines = chunk.splitlines()  # bytes split at CR, LF and CRLF only
        last = chunk[-1:]
        if last == b"\r":
            self._partial = [lines.pop(), b"\r"]
        elif last != b"\n":
            self._partial = [lines.pop()]
        return self._lines(lines)

    def finish(self) -> list[tuple[str | None, bytes]]:
        # Only a line that ended with its CR is complete; any other unfinished line is dropped.
        ended = self._partial[-1:] == [b"\r"]
        lines = b"".join(self._partial).splitlines() if ended else []
        self._partial = []
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[tuple[str | None, bytes]]:
        events: list[tuple[str | None, bytes]] = []
        for line in lines:
            if line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif not line:
                if self._data or self._event is not None:
                    data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                    events.append((self._event, data))
                self._event, self._data = None, []
            elif not line.startswith(b":"):
                name, _, value = line.partition(b":")
                value = value[1:] if value[:1] == b" " else value
                if name == b"event":
                    self._event = value.decode()
                elif name == b"data":
                    self._data.append(value)
        return events


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Each event of an SSE body as (event name or None, data bytes), for orjson to parse."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.finish():
        yield event


async def drain(response: httpx2.Response) -> None:
    """Read the rest of a body whose last event has arrived (normally just the closing chunk), as OpenAI's SDK does.

    An HTTP/1.1 connection goes back to the pool only if its response was read
    to the end before it is closed; HTTP/2 can drop the stream and keep the connection.
    """
    if response.is_closed or response.http_version != "HTTP/1.1":
        return
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            # The raw stream, not aiter_bytes(): the body iterator the caller stopped reading is still open.
            async for _ in cast(AsyncIterable[bytes], response.stream):
                pass
    except (TimeoutError, httpx2.RequestError, httpx2.StreamError):
        pass  # every event is in: a slow or broken tail costs only the connection
