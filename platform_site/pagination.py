"""The one pagination style of the API: ?page=N&page_size=M, with a count.

A list view sets ``pagination_class = PageNumberPagination`` and answers with
``paginated_response``: the schema then shows the paginated envelope.
"""

from typing import Any

from django.db.models import QuerySet
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's, strict: a ``page_size`` that is not a positive integer is a 400 (DRF ignores it), a bad page a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: ["Must be a positive integer."]})
        return min(int(raw), self.max_page_size)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        # DRF reads an empty ?page= as page 1; like any other non-number it is an invalid page (404) here.
        number = request.query_params.get(self.page_query_param)
        if number is None:
            return 1
        if number in self.last_page_strings:
            return paginator.num_pages
        if not number.isascii() or not number.isdigit():
            raise NotFound(self.invalid_page_message.format(page_number=number, message="Not a page number."))
        return number

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                most = self.max_page_size
                parameter["description"] = f"Results per page (default {self.page_size}; more than {most} give {most})."
        return parameters


def paginated_response(
    *,
    queryset: QuerySet[Any],
    serializer_class: type[serializers.Serializer],
    request: Request,
    view: APIView,
    context: dict[str, Any] | None = None,
) -> Response:
    # The view's own paginator, the one drf-spectacular reads to document the {count, next, previous, results} envelope.
    paginator_class: type[pagination.PageNumberPagination] = getattr(view, "pagination_class", None) or (
        PageNumberPagination
    )
    paginator = paginator_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context or {}).data)
