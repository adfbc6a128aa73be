"""Sign-in forms (the browser login page and the admin's) that refuse guessing.

Each failed sign-in is counted per client IP and per username in the shared
cache. While either count has reached LOGIN_FAILURE_LIMIT in the current
window, the form says so without checking the password, even a right one.
"""

import math
from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from .throttling import login_failure_add, login_failures_clear, login_failures_retry_after


class ThrottledAuthenticationForm(AuthenticationForm):
    # Seconds to wait, when the form was refused for too many failures.
    retry_after: int | None = None

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            return super().clean()  # an empty field: nothing is checked, nothing to count
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request is not None else ""
        self.retry_after = login_failures_retry_after(ip=ip, username=username)
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
            if error.code == "invalid_login":
                login_failure_add(ip=ip, username=username)
            raise
        login_failures_clear(username=username)
        return cleaned


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    pass
