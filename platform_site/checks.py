"""Django's security checks, made to see this project's middleware.

Django finds its middleware by dotted path (`"django.middleware.security.SecurityMiddleware" in
settings.MIDDLEWARE`). The ones in platform_site.middleware are subclasses, so Django reported them missing
(security.W001-W003, silenced in settings) and skipped every check that depends on them: HSTS, SSL redirect,
secure cookies, X-Frame-Options. Here those checks run again with each subclass named by the Django class it
extends; the missing-middleware warnings come back as platform_site.W001-W003.

Also the keys of users' MCP credentials (mcp_servers.credentials): a bad key is an error at start-up
(platform_site.E001), and a production set-up without keys of its own gets a deploy warning (W004).
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Tags, register
from django.core.checks.security import base, csrf, sessions
from django.test.utils import override_settings
from django.utils.module_loading import import_string

_CHECKS = (
    base.check_security_middleware,
    base.check_xframe_options_middleware,
    csrf.check_csrf_middleware,
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    base.check_csp_nonce_context_processor,
    csrf.check_csrf_cookie_secure,
    sessions.check_session_cookie_secure,
    sessions.check_session_cookie_httponly,
)
_SILENCED_IN_SETTINGS = {"security.W001", "security.W002", "security.W003"}


def _django_path(path: str) -> str:
    for cls in import_string(path).__mro__:
        if cls.__module__.startswith("django."):
            return f"{cls.__module__}.{cls.__qualname__}"
    return path


@register(Tags.security, deploy=True)
def security_checks_on_our_middleware(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    already_reported = [
        message
        for check in _CHECKS
        for message in check(app_configs, **kwargs)
        if message.id not in _SILENCED_IN_SETTINGS
    ]
    with override_settings(MIDDLEWARE=[_django_path(path) for path in settings.MIDDLEWARE]):
        messages = [message for check in _CHECKS for message in check(app_configs, **kwargs)]
    return [_renamed(message) for message in messages if message not in already_reported]


def _renamed(message: CheckMessage) -> CheckMessage:
    if message.id not in _SILENCED_IN_SETTINGS:
        return message
    # A copy: Django's messages are module constants.
    new_id = message.id.replace("security.", "platform_site.")
    return CheckMessage(message.level, message.msg, hint=message.hint, obj=message.obj, id=new_id)


@register(Tags.security)
def mcp_credentials_keys_valid(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Each of MCP_CREDENTIALS_KEYS must be a Fernet key: told by `check` and `migrate`, not at a first save."""
    from django.core.exceptions import ImproperlyConfigured

    from mcp_servers.credentials import credentials_fernet

    try:
        credentials_fernet()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="platform_site.E001")]
    return []


@register(Tags.security, deploy=True)
def mcp_credentials_keys_set(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if settings.MCP_CREDENTIALS_KEYS:
        return []
    return [
        checks.Warning(
            "MCP_CREDENTIALS_KEYS is not set: users' MCP credentials are encrypted with a key derived from "
            "SECRET_KEY, so changing SECRET_KEY makes them unreadable.",
            hint="Set MCP_CREDENTIALS_KEYS to a key of its own (README: Per-user values of MCP servers).",
            id="platform_site.W004",
        )
    ]
