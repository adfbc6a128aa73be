"""The middleware stack without a thread hop per hook: Django's own, and static files.

WhiteNoise's middleware is sync-only: in the middle of the async chain it made
Django run every API request's middleware in a worker thread. The wrapper here is
async-capable and hands only paths under STATIC_URL to WhiteNoise (in a thread:
serving opens a file); everything else goes straight on.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csp, csrf, security
from whitenoise.middleware import WhiteNoiseMiddleware


def _not_a_static_file(request: HttpRequest) -> None:
    return None


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.whitenoise = WhiteNoiseMiddleware(get_response=_not_a_static_file)
        self.prefix: str = self.whitenoise.static_prefix
        self._serve_in_thread = sync_to_async(self.whitenoise, thread_sensitive=False)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        if request.path_info.startswith(self.prefix):
            response = self.whitenoise(request)
            if response is not None:
                return response
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.prefix):
            response = await self._serve_in_thread(request)
            if response is not None:
                return response
        return await self.get_response(request)


# --- Django's own middleware, with their hooks run on the event loop --------------------------------
#
# Under ASGI, MiddlewareMixin runs every process_request / process_view / process_response of every
# middleware in a thread (sync_to_async): 14 thread hops per request here, about 5 ms of a trivial
# request's time. Their hooks are CPU-only (the session and the user are lazy), so these subclasses run
# them inline; the one hook that may do I/O (saving a modified session, storing queued messages in it)
# still goes to a thread, as Django would do it.


class _InlineHooks:
    get_response: Any  # MiddlewareMixin's, async here

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self._response_needs_thread(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response

    def _response_needs_thread(self, request: HttpRequest) -> bool:
        return False


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    pass


class ContentSecurityPolicyMiddleware(_InlineHooks, csp.ContentSecurityPolicyMiddleware):
    pass


class SessionMiddleware(_InlineHooks, sessions.SessionMiddleware):
    def _response_needs_thread(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_InlineHooks, csrf.CsrfViewMiddleware):
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        # Async, so Django calls it on the loop (and through async_to_sync in sync mode).
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(_InlineHooks, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_InlineHooks, messages.MessageMiddleware):
    def _response_needs_thread(self, request: HttpRequest) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass
