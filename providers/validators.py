"""Validators shared by models that store endpoints."""

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


def validate_http_url(value: str) -> None:
    """http(s) URL with a host. Unlike URLValidator it accepts bare hostnames such as ``http://ollama:11434``."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValidationError("Enter an http:// or https:// URL with a host.", code="invalid_url")
