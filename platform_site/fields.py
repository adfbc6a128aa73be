"""Strict input fields: a JSON value of the wrong type is a 400, never coerced.

DRF's own fields are lenient: ``CharField`` stores ``123`` as ``"123"``,
``IntegerField`` takes ``"5"`` and ``5.0``, ``BooleanField`` takes ``"yes"`` and
``1``. The OpenAPI schema promises a JSON type; every request serializer uses
these fields so the API keeps that promise.
"""

from typing import Any

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A JSON string only. ``max_length`` counts the string as sent, before whitespace is trimmed.

    ``schema_pattern`` is the pattern the OpenAPI schema states for the field when a later check (a
    service) refuses more than the field does; by default platform_site.schema derives it.
    """

    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, *, schema_pattern: str | None = None, **kwargs: Any) -> None:
        self.schema_pattern = schema_pattern
        super().__init__(**kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        # Before CharField's blank check, which would let "   " of a non-string type through as "".
        if data is not serializers.empty and data is not None and not isinstance(data, str):
            self.fail("invalid")
        if isinstance(data, str) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().run_validation(data)


class StrictSlugField(StrictCharField, serializers.SlugField):
    pass


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: not ``"5"``, ``5.0`` or ``true``."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: not ``"0.5"`` or ``true``."""

    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only: not ``1``, ``"true"`` or ``"yes"``."""

    default_error_messages = {"invalid": "Must be a boolean."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class SharedFieldsSerializer(serializers.Serializer):
    """A request serializer whose fields are built once per class, not deep-copied for every request.

    DRF deep-copies every declared field for each serializer instance: about a millisecond per turn for
    the turn's input. A validation-only serializer (never partial, no instance, no context read by its
    fields) on the event loop's one thread can share one set: validating leaves nothing on a field; the
    errors and the validated data stay on the instance.
    """

    @property
    def fields(self) -> Any:
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            shared = super().fields
            cls._shared_fields = shared  # type: ignore[attr-defined]
        return shared
