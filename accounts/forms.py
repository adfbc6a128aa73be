"""Sign-in forms (the browser login page and the admin's) that refuse guessing.

Each attempt is counted per client IP and per username in the shared cache
before the password is checked, and given back unless the password was wrong,
so guesses sent in parallel cannot overtake the count. Past LOGIN_FAILURE_LIMIT
in the current window, the form says so without checking the password, even a
right one.
"""

import math
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from .throttling import login_attempt_release, login_attempt_reserve, login_failures_clear


class ThrottledAuthenticationForm(AuthenticationForm):
    # Seconds to wait, when the form was refused for too many failures.
    retry_after: int | None = None

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            return super().clean()  # an empty field: nothing is checked, nothing to count
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request is not None else ""
        self.retry_after = login_attempt_reserve(ip=ip, username=username)
        if self.retry_after is not None:
            minutes = math.ceil(self.retry_after / 60)
            raise ValidationError(
                "Too many failed sign-in attempts. Try again in %(minutes)d minute(s).",
                code="too_many_failed_attempts",
                params={"minutes": minutes},
            )
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code != "invalid_login":  # e.g. an inactive account: not a guess
                login_attempt_release(ip=ip, username=username)
            raise
        login_attempt_release(ip=ip, username=username)
        login_failures_clear(username=username)
        return cleaned


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    pass
