"""The base of async API views: DRF's checks (authentication, permissions, throttles) through ``run_db``.

adrf runs ``initial()`` in the request's own thread, whose database connection
then stays checked out until the request ends, for the whole turn: 21 turns
in flight emptied a pool of 20 and deadlocked it. Here that work runs in the
shared database threads, and the connection goes back as soon as it is done.
"""

from typing import Any

from adrf.views import APIView
from asgiref.sync import iscoroutinefunction
from django.http.response import HttpResponseBase
from rest_framework import views as drf_views
from rest_framework.request import Request

from .db import run_db


class AsyncApiView(APIView):
    async def async_dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await run_db(self._initial, request, *args, **kwargs)
            method = request.method.lower()
            handler: Any = getattr(self, method, self.http_method_not_allowed)  # adrf is untyped
            if method not in self.http_method_names:
                handler = self.http_method_not_allowed
            response = handler(request, *args, **kwargs)
            if iscoroutinefunction(handler):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def _initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.initial(request, *args, **kwargs)
        request.user  # noqa: B018  (authenticate here, in the database thread, not later on the loop)

    def check_throttles(self, request: Request) -> None:
        # adrf's version calls async_to_sync even with no async throttle: a new event loop in a new
        # thread on every request. Every throttle here is sync, so DRF's own loop does.
        drf_views.APIView.check_throttles(self, request)
