"""REST view of the caller's usage."""

from datetime import UTC, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.requests import AuthenticatedRequest

from .selectors import usage_summary


def _parse_moment(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(value)
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    # In UTC: ISO allows offsets to ±23:59, PostgreSQL only to ±15:59.
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # an offset that takes year 1 or 9999 out of range
        raise ValueError(value) from None


MOMENT_SCHEMA = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}


class MomentField(serializers.Field):
    """An ISO date (midnight UTC) or datetime."""

    default_error_messages = {"invalid": "Use an ISO 8601 date (2026-01-31) or datetime."}

    def to_internal_value(self, data: object) -> datetime:
        try:
            return _parse_moment(str(data))
        except ValueError:
            self.fail("invalid")


class UsageTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=8, coerce_to_string=True)

    class Meta:
        ref_name = "UsageTotals"


class UsageGroupSerializer(UsageTotalsSerializer):
    key = serializers.CharField()

    class Meta:
        ref_name = "UsageGroup"


class UsageApi(APIView):
    class FilterSerializer(serializers.Serializer):
        group_by = serializers.ChoiceField(choices=["provider", "model", "day"], required=False)
        since = MomentField(required=False)
        until = MomentField(required=False)

        class Meta:
            ref_name = "UsageFilter"

        def validate(self, attrs: dict) -> dict:
            if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
                raise serializers.ValidationError({"until": "Must not be before since."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        totals = UsageTotalsSerializer()
        group_by = serializers.CharField(allow_null=True)
        groups = UsageGroupSerializer(many=True)

        class Meta:
            ref_name = "UsageSummary"

    @extend_schema(
        parameters=[
            OpenApiParameter("group_by", str, enum=["provider", "model", "day"]),
            OpenApiParameter("since", MOMENT_SCHEMA, description="ISO date or datetime, inclusive."),
            OpenApiParameter("until", MOMENT_SCHEMA, description="ISO date or datetime, exclusive; not before since."),
        ],
        responses=OutputSerializer,
        operation_id="usage_retrieve",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        # A plain dict, not the QueryDict: DRF reads an empty value in a QueryDict (?group_by=) as "not given".
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        summary = usage_summary(user=request.user, **filters.validated_data)
        return Response(self.OutputSerializer(summary).data)
