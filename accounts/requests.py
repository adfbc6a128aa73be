"""The request type of API views behind ``IsAuthenticated`` (the default permission): ``request.user`` is a ``User``."""

from rest_framework.request import Request

from .models import User


class AuthenticatedRequest(Request):
    """For annotations only: DRF passes a plain ``Request``, and ``IsAuthenticated`` has turned away the anonymous.

    Annotate a view's ``request`` with it only where that permission holds, so services get a ``User``, never an
    ``AnonymousUser``.
    """

    user: User
