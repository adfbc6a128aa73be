"""Django's ASGI handler, without three thread hops per request to an async view.

Django wraps every request in a ``ThreadSensitiveContext`` and sends
``request_started`` and ``response.close()`` (``request_finished``) through
``sync_to_async``. For a request whose view is async, that is a thread created
for the request, two hops into it, and another thread to join it: about a
millisecond of a turn's time. Their receivers (``reset_queries``,
``close_old_connections``, ``close_caches``, ``reset_urlconf``) only touch the
calling thread's database connections, and the event loop's thread never opens
one (async code reaches the ORM through ``platform_site.db.run_db``), so here
they run inline on the loop. Receivers connected to these two signals must not
block.

Requests to sync views (admin, the login page) take Django's own path
unchanged: each runs in a thread of its own, which closes its connections at
the end.

Both paths read the body here. A chunked body has no Content-Length, and DRF
reads no body without one: a chunked POST arrived as ``{}``. The request gets the
size received as its length, and no more than ``DATA_UPLOAD_MAX_MEMORY_SIZE``
is kept of a body (this API takes no file uploads): a longer one is read to its
end and its excess dropped, and the request then answers 413 as Django does for
a declared length over the limit.
"""

import asyncio
import tempfile
from collections.abc import Mapping
from contextlib import closing
from typing import IO, Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.http.response import HttpResponseBase
from django.urls import Resolver404, get_resolver, set_script_prefix

Scope = dict[str, Any]


class BodyFile(tempfile.SpooledTemporaryFile[bytes]):
    received = 0  # bytes the client sent, kept or not


class AsgiHandler(ASGIHandler):
    async def read_body(self, receive: Any) -> BodyFile:
        """Django's, keeping at most one byte past DATA_UPLOAD_MAX_MEMORY_SIZE (enough to answer 413)."""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        keep = None if limit is None else limit + 1
        body_file = BodyFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            body = message.get("body", b"")
            kept = body if keep is None else body[: max(0, keep - body_file.received)]
            body_file.received += len(body)
            if kept:
                if getattr(body_file, "_rolled", False):  # on disk
                    await sync_to_async(body_file.write, thread_sensitive=False)(kept)
                else:
                    body_file.write(kept)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    def create_request(
        self, scope: Mapping[str, Any], body_file: IO[bytes]
    ) -> tuple[ASGIRequest, None] | tuple[None, HttpResponseBase]:
        created = super().create_request(scope, body_file)
        request, received = created[0], getattr(body_file, "received", 0)
        if request is not None and received and not request.META.get("CONTENT_LENGTH"):
            request.META["CONTENT_LENGTH"] = str(received)
        return created

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._view_is_async(scope):
            await self._handle_async_view(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def _view_is_async(self, scope: Scope) -> bool:
        path = scope["path"]
        script_name = scope.get("root_path", "")
        if script_name and path.startswith(script_name):
            path = path[len(script_name) :]
        try:
            match = get_resolver().resolve(path or "/")
        except Resolver404:
            return False
        return iscoroutinefunction(match.func)

    async def _handle_async_view(self, scope: Scope, receive: Any, send: Any) -> None:
        """Django's ``handle()``, with the request signals and ``close()`` inline (see the module's doc)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                assert error_response is not None  # create_request returns one or the other
                await self.send_response(error_response, send)
                error_response.close()
                return

            class RequestProcessed(Exception):
                pass

            response = None
            try:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self.listen_for_disconnect(receive))
                        response = await self.run_get_response(request)
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as exception_group:
                if len(exception_group.exceptions) == 1:
                    raise exception_group.exceptions[0] from None
                raise
            if response is None:
                signals.request_finished.send(sender=self.__class__)
            else:
                response.close()


def get_asgi_application() -> AsgiHandler:
    """Like ``django.core.asgi.get_asgi_application``: set Django up, then the handler."""
    import django

    django.setup(set_prefix=False)
    return AsgiHandler()
