"""One error hierarchy for every provider SDK. Adapters map their SDK's exceptions onto it."""


class ProviderError(Exception):
    code = "provider_error"
    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        return f"{prefix}{self.message}"


class ProviderNotConfigured(ProviderError):
    code = "provider_not_configured"


class ProviderAuthenticationError(ProviderError):
    code = "provider_authentication_failed"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, provider: str = "", status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx, overloaded, or the server could not be reached."""

    code = "provider_unavailable"
    retryable = True


class ProviderBadRequest(ProviderError):
    """The provider rejected the request (bad model, bad schema, context too long); its message is kept."""

    code = "provider_bad_request"


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    retryable = True
