"""Domain exceptions raised by services; platform_site.errors turns them into HTTP responses."""

from typing import Any

import redis.exceptions

# What redis-py raises (sync and asyncio clients alike) when Redis is unreachable or too slow to answer: an
# outage to ride out, not a bug. Any other RedisError (a wrong type, a bad command) is a bug and stays a 500.
REDIS_AWAY: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class ApplicationError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class ValidationFailed(ApplicationError):
    status_code = 400
    code = "invalid"


class PermissionDenied(ApplicationError):
    status_code = 403
    code = "permission_denied"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class ServiceUnavailable(ApplicationError):
    status_code = 503
    code = "unavailable"


class RedisUnavailable(ServiceUnavailable):
    """Redis is away and what was asked cannot be done without it; worth asking again shortly."""

    code = "service_unavailable"
    retry_after = 5

    def __init__(self, message: str = "A shared service (Redis) is unreachable; try again shortly.") -> None:
        super().__init__(message)


class RateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None, details: Any = None) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = max(1, int(retry_after))


class UpstreamError(ApplicationError):
    """A server we depend on (an MCP server, a provider) answered with an error."""

    status_code = 502
    code = "upstream_error"
