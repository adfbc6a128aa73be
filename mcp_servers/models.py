"""MCP server configurations. The name is the tool prefix offered to models (``<name>__<tool>``)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from providers.validators import validate_http_url

from .validators import (
    validate_roots,
    validate_server_name,
    validate_string_list,
    validate_string_mapping,
    validate_tool_policies,
    validate_user_vars,
)


class Transport(models.TextChoices):
    STDIO = "stdio", "stdio (local process)"
    STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"
    SSE = "sse", "SSE (legacy)"


class Policy(models.TextChoices):
    """Whether a tool call runs: at once, after a human's yes, or never."""

    ALLOW = "allow", "allow"
    ASK = "ask", "ask (a human approves each call)"
    DENY = "deny", "deny"


class LogLevel(models.TextChoices):
    """MCP's logging levels (RFC 5424), lowest first."""

    DEBUG = "debug", "debug"
    INFO = "info", "info"
    NOTICE = "notice", "notice"
    WARNING = "warning", "warning"
    ERROR = "error", "error"
    CRITICAL = "critical", "critical"
    ALERT = "alert", "alert"
    EMERGENCY = "emergency", "emergency"


class NonInteractive(models.TextChoices):
    """What an elicitation gets when no person can answer: a call with no turn behind it (Celery, commands)."""

    DECLINE = "decline", "decline"
    ACCEPT_DEFAULTS = "accept_defaults", "accept with the schema's defaults"


class AuthMode(models.TextChoices):
    """How the host authenticates to a remote (HTTP) server."""

    NONE = "none", "none (or headers)"
    OAUTH = "oauth", "OAuth 2.1: each user signs in in their browser"
    CLIENT_CREDENTIALS = "client_credentials", "OAuth 2.1 client credentials (no user)"


class McpServer(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[validate_server_name])
    display_name = models.CharField(max_length=100, blank=True)
    description = models.TextField(blank=True)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.STDIO)
    command = models.CharField(max_length=500, blank=True, help_text="stdio: the executable to run.")
    args = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    env = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_string_mapping],
        help_text='stdio: environment of the process. Values may reference "${VAR}" from the host environment.',
    )
    cwd = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=500, blank=True, help_text="HTTP transports: the endpoint.")
    headers = models.JSONField(
        default=dict, blank=True, validators=[validate_string_mapping], help_text='Values may reference "${VAR}".'
    )
    enabled = models.BooleanField(default=True)
    timeout_seconds = models.PositiveIntegerField(default=30, help_text="Per tool call.")
    tool_allowlist = models.JSONField(
        default=list, blank=True, validators=[validate_string_list], help_text="Tool names to offer; empty = all."
    )
    denied_tools = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="Tool names never offered to anyone's model nor callable, staff included.",
    )
    access_restricted = models.BooleanField(
        default=False,
        help_text="Only the users and groups below may use this server; otherwise everyone may.",
    )
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+", help_text="When restricted: these users may use it."
    )
    allowed_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="When restricted: members of these groups may use it."
    )
    approval_default = models.CharField(
        max_length=5,
        choices=Policy.choices,
        blank=True,
        help_text="For tools with no policy of their own and no hint: blank = allow. A tool marked read-only "
        "by the server is allowed, one marked destructive asks.",
    )
    tool_policies = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_tool_policies],
        help_text='Per tool: {"write_file": "ask", "move_file": "deny"}. Wins over the server\'s hints.',
    )
    user_vars = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_user_vars],
        help_text='Values each user sets for themselves: {"GITHUB_TOKEN": {"title": "GitHub token", "secret": true}}. '
        'A stdio server gets each in its environment; "{{GITHUB_TOKEN}}" puts one in args, env, headers or URL.',
    )
    auth = models.CharField(
        max_length=20,
        choices=AuthMode.choices,
        default=AuthMode.NONE,
        help_text="HTTP transports: OAuth makes the server per-user (each user connects in their browser).",
    )
    oauth_client_id = models.CharField(
        max_length=300,
        blank=True,
        help_text="A client registered beforehand at the authorization server; blank: dynamic registration "
        "(oauth only; client_credentials needs one).",
    )
    oauth_client_secret = models.CharField(
        max_length=500, blank=True, help_text='Write-only. May be a "${VAR}" reference to the host environment.'
    )
    oauth_scopes = models.CharField(
        max_length=500, blank=True, help_text="Space-separated scopes to ask for; blank: what the server advertises."
    )
    oauth_issuer = models.CharField(
        max_length=500,
        blank=True,
        help_text="client_credentials: the authorization server the client secret may be sent to (its issuer URL).",
    )
    # --- what the host answers the server's own requests with ------------------------------------
    log_level = models.CharField(
        max_length=10,
        choices=LogLevel.choices,
        blank=True,
        help_text="Asked of the server (logging/setLevel); blank: its own.",
    )
    roots = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_roots],
        help_text='Answered on roots/list: [{"uri": "file:///srv/data", "name": "data"}].',
    )
    sampling_policy = models.CharField(
        max_length=5,
        choices=Policy.choices,
        default=Policy.ASK,
        help_text="Whether the server may ask a model to think (sampling/createMessage): ask = a person approves each.",
    )
    sampling_provider = models.ForeignKey(
        "providers.Provider",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Sampling runs on this provider; blank: the turn's own.",
    )
    sampling_model = models.CharField(max_length=200, blank=True, help_text="With sampling_provider.")
    sampling_without_user = models.BooleanField(
        default=False, help_text="Allow sampling with no user behind the call (background jobs, commands)."
    )
    elicitation_non_interactive = models.CharField(
        max_length=20,
        choices=NonInteractive.choices,
        default=NonInteractive.DECLINE,
        help_text="An elicitation when no person can answer.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MCP server"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(transport__in=Transport.values), name="mcpserver_transport_valid"
            ),
            models.CheckConstraint(condition=models.Q(timeout_seconds__gte=1), name="mcpserver_timeout_positive"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    def clean(self) -> None:
        super().clean()
        # Field validators skip "empty" values such as {} and [], so check the shapes here too.
        shape_errors = {}
        for field, validator in (
            ("args", validate_string_list),
            ("tool_allowlist", validate_string_list),
            ("denied_tools", validate_string_list),
            ("tool_policies", validate_tool_policies),
            ("user_vars", validate_user_vars),
            ("roots", validate_roots),
            ("env", validate_string_mapping),
            ("headers", validate_string_mapping),
        ):
            try:
                validator(getattr(self, field))
            except ValidationError as exc:
                shape_errors[field] = exc.messages
        if shape_errors:
            raise ValidationError(shape_errors)
        if self.auth != AuthMode.NONE and self.transport == Transport.STDIO:
            raise ValidationError({"auth": "OAuth is for HTTP transports."})
        if self.auth == AuthMode.CLIENT_CREDENTIALS and not (self.oauth_client_id and self.oauth_client_secret):
            raise ValidationError({"oauth_client_id": "Client credentials need a client ID and a client secret."})
        if self.transport == Transport.STDIO and not self.command.strip():
            raise ValidationError({"command": "A stdio server needs a command."})
        if self.transport in (Transport.STREAMABLE_HTTP, Transport.SSE):
            if not self.url.strip():
                raise ValidationError({"url": "An HTTP server needs a URL."})
            # A "${VAR}" reference may stand for the whole URL; check only literal ones.
            if "${" not in self.url:
                try:
                    validate_http_url(self.url)
                except ValidationError as exc:
                    raise ValidationError({"url": exc.messages}) from exc


class ServerState(models.TextChoices):
    """What the host reports for a server (mcp_servers.results.Status)."""

    CONNECTING = "connecting", "connecting"
    CONNECTED = "connected", "connected"
    ERROR = "error", "error"
    DISABLED = "disabled", "disabled"
    PER_USER = "per-user", "per-user (one connection per user, started on use)"


class McpServerHealthSnapshot(models.Model):
    """One periodic reading of a server's state in the host of the worker that took it (append-only).

    Keyed by server name rather than a foreign key, so the history outlives a
    deleted or renamed server row.
    """

    server = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=20, choices=ServerState.choices)
    tool_count = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_call_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Latency of the last tool call.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "MCP server health snapshot"
        ordering = ["-created_at", "server"]

    def __str__(self) -> str:
        return f"{self.server} {self.status} at {self.created_at:%Y-%m-%d %H:%M}"


class McpUserCredential(models.Model):
    """One user's own values for a server's ``user_vars``, encrypted (``mcp_servers.credentials``)."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="credentials")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    values = models.TextField(help_text="The values as a JSON object, encrypted; never shown.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MCP user credential"
        constraints = [models.UniqueConstraint(fields=["server", "user"], name="mcp_credential_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.server} for user {self.user_id}"


class McpServerLogEntry(models.Model):
    """A log message a server sent (notifications/message), kept per server up to MCP_SERVER_LOG_KEEP."""

    server = models.CharField(max_length=40)
    level = models.CharField(max_length=10, choices=LogLevel.choices)
    logger = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=None, null=True, help_text="What the server sent, redacted of its secrets.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "MCP server log entry"
        verbose_name_plural = "MCP server log"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["server", "-created_at"], name="mcp_log_server_newest")]

    def __str__(self) -> str:
        return f"{self.server} {self.level} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class McpOAuthToken(models.Model):
    """One user's OAuth grant for one server (``mcp_servers.oauth``): tokens and client registration, encrypted.

    ``data`` holds ``{"tokens": OAuthToken, "client_info": OAuthClientInformationFull}`` as JSON, encrypted
    like the user credentials. No ``tokens`` (or no row): the user must sign in, with ``needs_scope`` when the
    server asked for more scope than the last grant had.
    """

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="oauth_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    data = models.TextField(help_text="Tokens and client registration as JSON, encrypted; never shown.")
    signed_in_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the user must sign in (again).")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Of the access token.")
    scope = models.CharField(max_length=1000, blank=True, help_text="Granted.")
    needs_scope = models.CharField(max_length=1000, blank=True, help_text="Asked for by the server (step-up).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MCP OAuth token"
        constraints = [models.UniqueConstraint(fields=["server", "user"], name="mcp_oauth_token_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.server} for user {self.user_id}"


class McpOAuthFlow(models.Model):
    """A browser sign-in under way: found by its ``state`` at the callback, used once, valid a few minutes."""

    state = models.CharField(max_length=100, unique=True)
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    data = models.TextField(help_text="PKCE verifier, client, metadata and redirect URI as JSON, encrypted.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "MCP OAuth sign-in in progress"

    def __str__(self) -> str:
        return f"{self.server} sign-in for user {self.user_id}"
