"""Static files without a thread hop on every other request.

WhiteNoise's middleware is sync-only: in the middle of the async chain it made
Django run every API request's middleware in a worker thread. This wrapper is
async-capable and hands only paths under STATIC_URL to WhiteNoise (in a thread:
serving opens a file); everything else goes straight on.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
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
