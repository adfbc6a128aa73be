"""WebSocket authentication by API key, as Channels middleware over the same checks as the REST API.

The key comes from ``Authorization: Bearer <key>``, or, since browsers cannot
set headers on a WebSocket, from the subprotocols ``["llmp.bearer", "<key>"]``.
A valid key sets ``scope["user"]`` and ``scope["api_key"]``; an invalid one
leaves an anonymous user (the consumer closes with 4401). Without a key the
session user from ``AuthMiddlewareStack`` stands. The subprotocol to accept
is left in ``scope["auth_subprotocol"]``. A client that sent too many unknown
keys (the REST API's count, per IP) is closed here with 4429, its key unread.
"""

from typing import TYPE_CHECKING, Any, cast

from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions

from platform_site.db import run_db

from .authentication import api_key_authenticate, api_key_from_headers

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope

SUBPROTOCOL = "llmp.bearer"
CLOSE_TOO_MANY_FAILED_ATTEMPTS = 4429


def _key_from_scope(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    raw_key = api_key_from_headers(headers)
    subprotocol = None
    offered = list(scope.get("subprotocols") or [])
    if SUBPROTOCOL in offered:
        others = [protocol for protocol in offered if protocol != SUBPROTOCOL]
        raw_key = raw_key or (others[0] if others else None)
        subprotocol = SUBPROTOCOL
    return raw_key, subprotocol


class ApiKeyAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: "_ChannelScope", receive: Any, send: Any) -> Any:
        # A copy with this middleware's keys (api_key, auth_subprotocol), which the stubs' scope type lacks.
        extended: dict[str, Any] = dict(scope)
        raw_key, subprotocol = _key_from_scope(extended)
        extended["auth_subprotocol"] = subprotocol
        extended["api_key"] = None
        if raw_key:
            client = extended.get("client") or ("",)
            try:
                api_key = await run_db(api_key_authenticate, raw_key, client_ip=client[0])
            except exceptions.Throttled:
                return await _refuse(receive, send, subprotocol=subprotocol)
            except exceptions.AuthenticationFailed:
                extended["user"] = AnonymousUser()
            else:
                extended["user"], extended["api_key"] = api_key.owner, api_key
        return await super().__call__(cast("_ChannelScope", extended), receive, send)


async def _refuse(receive: Any, send: Any, *, subprotocol: str | None) -> None:
    # Accepted, then closed (as the consumer does with 4401), so that the client sees why.
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    await send({"type": "websocket.close", "code": CLOSE_TOO_MANY_FAILED_ATTEMPTS})
