"""Settings, all from the environment, with a working default for a laptop.

Unset DATABASE_URL and REDIS_URL give the embedded default: SQLite, in-memory
channel layer, local-memory cache and eager Celery. Every variable read here is
listed in README.md.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "platform_site",  # system checks (platform_site/checks.py) and the devsetup command
    "accounts",
    "providers",
    "mcp_servers",
    "prompts",
    "chats",
    "usage",
]

MIDDLEWARE = [
    # Django's own, with their CPU-only hooks run on the event loop (platform_site/middleware.py).
    "platform_site.middleware.SecurityMiddleware",
    "platform_site.middleware.StaticFilesMiddleware",  # WhiteNoise, for STATIC_URL only
    "platform_site.middleware.ContentSecurityPolicyMiddleware",  # SECURE_CSP below
    "platform_site.middleware.SessionMiddleware",
    "platform_site.middleware.CommonMiddleware",
    "platform_site.middleware.CsrfViewMiddleware",
    "platform_site.middleware.AuthenticationMiddleware",
    "platform_site.middleware.MessageMiddleware",
    "platform_site.middleware.XFrameOptionsMiddleware",
]
# Django's checks look for its own dotted paths; platform_site/checks.py runs them on the subclasses above.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "platform_site.urls"
ASGI_APPLICATION = "platform_site.asgi.application"
WSGI_APPLICATION = "platform_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",  # csp_nonce, for the few inline blocks (API docs)
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL)
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}

if _db["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request runs in its own thread context, so persistent
    # connections (CONN_MAX_AGE) do not help; psycopg's pool does.
    if env_bool("DATABASE_POOL", True):
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10),
        }
    else:
        _db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
        _db["CONN_HEALTH_CHECKS"] = True
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL plus IMMEDIATE transactions keep concurrent async writers from
    # failing with "database is locked" on the embedded default.
    _db.setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
    # A file, not memory, so a server process started by the tests sees the test database too.
    # (per process, so two test runs never share one).
    _db.setdefault("TEST", {"NAME": str(BASE_DIR / f"test-db-{os.getpid()}.sqlite3")})

DATABASES = {"default": _db}
# Threads that run async code's ORM work (platform_site.db); each holds a connection only while it works.
DATABASE_THREADS = env_int("DATABASE_THREADS", 8)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache (rate limits), Celery --------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: each process subscribes once and fans out locally. The list-based
            # RedisChannelLayer stalled with a few dozen streaming WebSockets per process (bench/ws_streams.py),
            # and with redis-py 8 (5 s default socket timeout, as long as its blocking pop) idle consumers died.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "max_connections": env_int("CHANNELS_REDIS_MAX_CONNECTIONS", 5000),
                    }
                ],
                "prefix": "llmp:channels",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "platform_site.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "llmp"),
            # Every API request counts here: a Redis that stops answering must fail fast, so that the counters
            # fall back to the process (platform_site.counters) instead of holding the request.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "purge-expired-api-keys": {
        "task": "accounts.tasks.purge_expired_api_keys",
        "schedule": crontab(hour=3, minute=17),
    },
    # Health checks expire rather than pile up while no worker is running.
    "snapshot-provider-health": {
        "task": "providers.tasks.snapshot_all_provider_health",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 9 * 60},
    },
    "snapshot-mcp-health": {
        "task": "mcp_servers.tasks.snapshot_mcp_health",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 9 * 60},
    },
    # No argument: the task rolls up yesterday (UTC), a few minutes after it ended.
    "rollup-usage-yesterday": {
        "task": "usage.tasks.rollup_usage_day",
        "schedule": crontab(hour=0, minute=15),
    },
}

# --- Auth ---------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# A process keeps an API key's lookup this long: a revoked key stops working within this many seconds.
API_KEY_CACHE_SECONDS = env_float("API_KEY_CACHE_SECONDS", 5)

# API keys older than this many days past expiry or revocation are deleted by
# the periodic purge task.
API_KEY_PURGE_AFTER_DAYS = env_int("API_KEY_PURGE_AFTER_DAYS", 30)

# Guessing is throttled in fixed windows counted in the shared cache (accounts.throttling); 0 turns a limit off.
# Failed sign-ins (/login/, /admin/login/) per account and, separately, per client IP:
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
LOGIN_FAILURE_WINDOW_SECONDS = max(1, env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900))
# Unknown API keys (REST and WebSocket) per client IP:
API_KEY_FAILURE_LIMIT = env_int("API_KEY_FAILURE_LIMIT", 30)
API_KEY_FAILURE_WINDOW_SECONDS = max(1, env_int("API_KEY_FAILURE_WINDOW_SECONDS", 60))

# --- REST API -----------------------------------------------------------------

RATE_LIMIT_PER_MINUTE = env_int("RATE_LIMIT_PER_MINUTE", 120)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.UserRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["platform_site.parsers.JSONParser"],  # with JSON_MAX_DEPTH
    "DEFAULT_PAGINATION_CLASS": "platform_site.pagination.PageNumberPagination",
    "DEFAULT_SCHEMA_CLASS": "platform_site.schema.AutoSchema",
    "EXCEPTION_HANDLER": "platform_site.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Platform API",
    "DESCRIPTION": "Multi-provider LLM chat with MCP tool calling.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the sidecar package's static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# Request bodies above this size get 413 (chat messages have their own limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1024 * 1024)
# JSON bodies and WebSocket frames that nest arrays and objects deeper than this get 400 invalid_json.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64)
# CSRF failures under /api/ answer in the API's JSON error shape.
CSRF_FAILURE_VIEW = "platform_site.errors.csrf_failure"

# --- Providers ----------------------------------------------------------------

DEFAULT_PROVIDER = os.environ.get("DEFAULT_PROVIDER", "anthropic")
DEFAULT_MODEL = os.environ.get("DEFAULT_MODEL", "")
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 120)
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", 2)
PROVIDER_RETRY_BASE_DELAY = env_float("PROVIDER_RETRY_BASE_DELAY", 0.5)
PROVIDER_RETRY_MAX_DELAY = env_float("PROVIDER_RETRY_MAX_DELAY", 20)
PROVIDER_MODELS_CACHE_SECONDS = env_float("PROVIDER_MODELS_CACHE_SECONDS", 300)
# The provider kinds: one adapter class each (providers/base.py), which declares everything else about its kind.
PROVIDER_ADAPTERS = env_list(
    "PROVIDER_ADAPTERS",
    [
        "providers.adapters.anthropic.AnthropicAdapter",
        "providers.adapters.openai.OpenAIAdapter",
        "providers.adapters.gemini.GeminiAdapter",
        "providers.adapters.ollama.OllamaAdapter",
        "providers.adapters.openai_compatible.OpenAICompatibleAdapter",
    ],
)
# How long a process keeps provider and model rows; an edit in this process clears them at once.
CONFIG_CACHE_SECONDS = env_float("CONFIG_CACHE_SECONDS", 5)

# --- Chat engine ------------------------------------------------------------------

CHAT_MAX_TOOL_ROUNDS = env_int("CHAT_MAX_TOOL_ROUNDS", 10)
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 100_000)
CHAT_MAX_TOOL_ARGUMENT_BYTES = env_int("CHAT_MAX_TOOL_ARGUMENT_BYTES", 64 * 1024)
CHAT_MAX_TOOL_RESULT_CHARS = env_int("CHAT_MAX_TOOL_RESULT_CHARS", 100_000)
# The text of the MCP resources attached to one message, all together (a 400 attachment_too_large above).
CHAT_MAX_ATTACHMENT_CHARS = env_int("CHAT_MAX_ATTACHMENT_CHARS", 200_000)
CHAT_SSE_HEARTBEAT_SECONDS = env_float("CHAT_SSE_HEARTBEAT_SECONDS", 15)
CHAT_WS_MAX_FRAME_BYTES = env_int("CHAT_WS_MAX_FRAME_BYTES", 512 * 1024)
# The web server's own cap on a WebSocket message (passed to daphne and uvicorn by their commands, which
# read the same variable): above CHAT_WS_MAX_FRAME_BYTES so larger frames get the consumer's frame_too_large.
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 4 * 1024 * 1024)
if CHAT_WS_MAX_FRAME_BYTES >= WS_MAX_MESSAGE_BYTES:
    raise ImproperlyConfigured("CHAT_WS_MAX_FRAME_BYTES must be below WS_MAX_MESSAGE_BYTES")
# A running turn holds its chat for this long, renewed while it runs: a worker that dies frees it after this.
CHAT_TURN_LEASE_SECONDS = env_float("CHAT_TURN_LEASE_SECONDS", 60)
# How long a tool call whose policy is "ask" waits for a person's decision before it is refused as expired.
TOOL_APPROVAL_TIMEOUT_SECONDS = env_float("TOOL_APPROVAL_TIMEOUT_SECONDS", 600)
# A waiting call is woken when its decision is stored (over Redis from another worker); it also re-reads
# its approval this often, in case that wake-up was lost.
TOOL_APPROVAL_POLL_SECONDS = env_float("TOOL_APPROVAL_POLL_SECONDS", 2)

# --- MCP host -------------------------------------------------------------------

MCP_CONNECT_TIMEOUT = env_float("MCP_CONNECT_TIMEOUT", 60)
MCP_MAX_CONCURRENT_CALLS = env_int("MCP_MAX_CONCURRENT_CALLS", 8)
MCP_RESTART_BACKOFF_INITIAL = env_float("MCP_RESTART_BACKOFF_INITIAL", 0.5)
MCP_RESTART_BACKOFF_MAX = env_float("MCP_RESTART_BACKOFF_MAX", 30)
# The filesystem server's sandbox in the default set-up (ensure_default_mcp_servers).
MCP_WORKSPACE_DIR = os.environ.get("MCP_WORKSPACE_DIR", str(BASE_DIR / "workspace"))
# "auto" negotiates 2026-07-28 and falls back to the initialize handshake; "legacy" always handshakes.
MCP_PROTOCOL_MODE = os.environ.get("MCP_PROTOCOL_MODE", "auto")
if MCP_PROTOCOL_MODE not in ("auto", "legacy"):
    raise ImproperlyConfigured("MCP_PROTOCOL_MODE must be 'auto' or 'legacy'")
# Web and Celery worker processes connect every MCP server as they start (not on the first request).
MCP_CONNECT_AT_START = env_bool("MCP_CONNECT_AT_START", True)
# How long a request waits for servers that are still making their first connection.
MCP_READY_WAIT = env_float("MCP_READY_WAIT", 5)
# Per-user MCP servers ({{user.id}} / {{user.username}} in their configuration) run one connection per
# (server, user) in each process: closed after this long unused, and at most this many (least recently used go).
MCP_USER_CONNECTION_IDLE_SECONDS = env_float("MCP_USER_CONNECTION_IDLE_SECONDS", 600)
MCP_USER_CONNECTIONS_MAX = env_int("MCP_USER_CONNECTIONS_MAX", 50)
if MCP_USER_CONNECTIONS_MAX < 1:
    raise ImproperlyConfigured("MCP_USER_CONNECTIONS_MAX must be at least 1")
# Log messages kept per MCP server (McpServerLogEntry, shown to staff); older ones are deleted.
MCP_SERVER_LOG_KEEP = env_int("MCP_SERVER_LOG_KEEP", 200)
if MCP_SERVER_LOG_KEEP < 1:
    raise ImproperlyConfigured("MCP_SERVER_LOG_KEEP must be at least 1")
# Fernet keys (comma-separated) that encrypt users' own values of MCP servers' user_vars: the first encrypts,
# all decrypt (rotation: mcp_servers.credentials). Unset: one key derived from SECRET_KEY; set it in production.
MCP_CREDENTIALS_KEYS = env_list("MCP_CREDENTIALS_KEYS", [])
# The OAuth callback to register at authorization servers; blank: this site's /api/mcp/oauth/callback as
# the browser reached it (set it behind a proxy that does not pass the original host and scheme).
MCP_OAUTH_REDIRECT_URI = os.environ.get("MCP_OAUTH_REDIRECT_URI", "")
# The platform's OAuth client ID metadata document (CIMD): its public HTTPS URL, which becomes the client ID at
# authorization servers that support CIMD (instead of registering). Serve /api/mcp/oauth/client-metadata.json
# at it. Blank: dynamic registration (or the client set in admin) only.
MCP_OAUTH_CLIENT_METADATA_URL = os.environ.get("MCP_OAUTH_CLIENT_METADATA_URL", "")
if MCP_OAUTH_CLIENT_METADATA_URL and not (
    MCP_OAUTH_CLIENT_METADATA_URL.startswith("https://") and MCP_OAUTH_CLIENT_METADATA_URL.count("/") > 2
):
    raise ImproperlyConfigured("MCP_OAUTH_CLIENT_METADATA_URL must be an https:// URL with a path")

# --- Admin bootstrap ------------------------------------------------------------

ADMIN_USERNAME = os.environ.get("ADMIN_USERNAME", "admin")
ADMIN_EMAIL = os.environ.get("ADMIN_EMAIL", "admin@example.com")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "")

# --- I18N, static -------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Serve app static files even where collectstatic has not run (tests, a quick start); STATIC_ROOT wins.
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- HTTPS and browser policy -----------------------------------------------------
# Off by default so the dev server works over plain HTTP; README lists the production values
# (`manage.py check --deploy` is clean with them).

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)

# "HEADER,value" as Django sees it (HTTP_X_FORWARDED_PROTO,https), or "none". Only behind a proxy that
# sets the header itself: a client that can send it straight to the app could claim HTTPS.
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", [] if DEBUG else ["HTTP_X_FORWARDED_PROTO", "https"])
if _proxy_ssl_header and _proxy_ssl_header != ["none"]:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be 'HEADER,value' or 'none'")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes call the app directly over HTTP from inside its network (docker-compose's healthcheck).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Model output is untrusted HTML: whatever slips past the page's sanitiser still may not run script, load
# a remote image or send data anywhere but this origin. 'self' covers ws:/wss: to this host (CSP level 3).
# Pages with an inline block (the API docs) add a per-response nonce; the chat page has none.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
