"""Static files for the browser pages, served by WhiteNoise without making the whole stack synchronous.

WhiteNoise's middleware is sync-only; in Django's middleware chain a sync-only
middleware makes every request hop to a worker thread and back. This wrapper is
async-capable, answers static paths from WhiteNoise's file index (DEBUG: found
on each request) and passes every other request straight on.
"""

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.whitenoise = WhiteNoiseMiddleware(get_response=None)
        markcoroutinefunction(self)  # tells Django's handler this middleware is async

    def _find(self, path: str):  # type: ignore[no-untyped-def]
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(path)
        return self.whitenoise.files.get(path)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.whitenoise.static_prefix):
            static_file = await sync_to_async(self._find, thread_sensitive=False)(request.path_info)
            if static_file is not None:
                return self.whitenoise.serve(static_file, request)
        return await self.get_response(request)
