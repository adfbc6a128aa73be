"""MCP resources attached to a user message: read as the user before the model is called, kept as text blocks.

Each resource content becomes one ``TextBlock`` of the user message, after the
text the user typed, with a header naming the resource: every provider adapter
already replays text blocks, so history moves between providers unchanged.
Binary contents are not sent (the platform has no image blocks yet): a note
says what was left out.
"""

import asyncio
import base64
import binascii
from dataclasses import dataclass

from django.conf import settings
from mcp_types import BlobResourceContents, TextResourceContents

from accounts.models import User
from mcp_servers.selectors import mcp_resource_read
from platform_site.exceptions import ApplicationError, ValidationFailed
from providers.types import TextBlock

# Adapters join a message's text blocks without a separator (OpenAI, Ollama): each block brings its own.
HEADER = "\n\nAttached resource {uri} ({mime}):\n"
BINARY_NOTE = "\n\n[binary resource {uri} ({mime}, {size} bytes) not included]"


@dataclass(frozen=True)
class Attachment:
    """A resource to attach: the server that has it and its URI."""

    server: str
    uri: str


async def attachments_read(*, user: User, attachments: list[Attachment]) -> list[TextBlock]:
    """The blocks of ``attachments`` (duplicates once), read concurrently as ``user``.

    The servers' access rules were checked by ``turn_prepare`` and are applied again by the selector.
    A resource that cannot be read is a 400 ``attachment_unreadable`` naming it; more text than
    ``CHAT_MAX_ATTACHMENT_CHARS`` in all is a 400 ``attachment_too_large``.
    """
    unique = list(dict.fromkeys(attachments))
    contents = await asyncio.gather(*(_read(user=user, attachment=attachment) for attachment in unique))
    blocks: list[TextBlock] = []
    total = 0
    for attachment, items in zip(unique, contents, strict=True):
        for item in items:
            block, chars = _block(attachment, item)
            blocks.append(block)
            total += chars
    limit = settings.CHAT_MAX_ATTACHMENT_CHARS
    if total > limit:
        raise ValidationFailed(
            f"The attached resources hold {total} characters of text; at most {limit} may be attached to a message.",
            code="attachment_too_large",
            details={"attachments": [f"At most {limit} characters in all; these have {total}."]},
        )
    return blocks


async def _read(*, user: User, attachment: Attachment) -> list[TextResourceContents | BlobResourceContents]:
    try:
        return await mcp_resource_read(user=user, server=attachment.server, uri=attachment.uri)
    except ApplicationError as exc:
        # What the user can fix on the server's page keeps its own 400. Anything else (no such resource, a
        # server that is down or did not answer) is this attachment's 400, naming it and the cause's code.
        if exc.code in ("mcp_server_needs_setup", "mcp_server_needs_sign_in"):
            raise
        raise _unreadable(attachment, exc) from exc


def _unreadable(attachment: Attachment, exc: ApplicationError) -> ValidationFailed:
    return ValidationFailed(
        f"The resource {attachment.uri!r} of MCP server {attachment.server!r} could not be read: {exc.message}",
        code="attachment_unreadable",
        details={"attachments": [{"server": attachment.server, "uri": attachment.uri, "code": exc.code}]},
    )


def _block(attachment: Attachment, item: TextResourceContents | BlobResourceContents) -> tuple[TextBlock, int]:
    """One content as a text block, and how many characters of the resource's text it holds."""
    uri = item.uri or attachment.uri
    mime = item.mime_type or "unknown type"
    if isinstance(item, TextResourceContents):
        return TextBlock(text=HEADER.format(uri=uri, mime=mime) + item.text), len(item.text)
    try:
        size = len(base64.b64decode(item.blob))
    except (binascii.Error, ValueError):
        size = len(item.blob)
    return TextBlock(text=BINARY_NOTE.format(uri=uri, mime=mime, size=size)), 0
