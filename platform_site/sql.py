"""A few writes sent as one statement: the hot path's rows without the ORM's per-row cost.

A turn writes the same handful of rows every time (a message, its usage record,
the chat's release). Through the ORM each costs about a millisecond of Python
on top of its round trip, and ``transaction.atomic`` adds two more round trips.
Here each row is one ``Statement`` built from the model's own field
definitions (so values are adapted exactly as the ORM would), and
``run_together`` sends them:

- on PostgreSQL as one statement, the rows joined by data-modifying ``WITH``
  clauses: one round trip, atomic by itself;
- elsewhere (SQLite) one after another inside ``transaction.atomic``.

Model signals (``post_save``) do not fire for these rows: use the ORM for any
model that has receivers. SQL text is built only from model metadata (table and
column names, quoted); every value is a bound parameter.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from django.db import connection, models, transaction

FIRST_ID = object()  # as a value: the id the first statement of the batch returns (a new chat's, for its message)
_FIRST_ID_PLACEHOLDER = "{first_id}"


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...]
    returns_id: bool = False


# Fields whose Python value is already what the database driver takes: no per-value preparation.
_PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField, models.BooleanField, models.ForeignKey)


def _column(field: "models.Field[Any, Any]") -> str:
    assert field.column is not None  # every concrete field has one
    return field.column


@functools.cache
def _columns(
    model: type[models.Model], names: tuple[str, ...]
) -> tuple[list[str], list["models.Field[Any, Any] | None"]]:
    """Quoted columns of ``names``, and for each the field whose values need preparing (None: taken as they are)."""
    quote = connection.ops.quote_name
    fields = [cast("models.Field[Any, Any]", model._meta.get_field(name)) for name in names]
    columns = [quote(_column(field)) for field in fields]
    preparers = [None if isinstance(field, _PLAIN_FIELDS) else field for field in fields]
    return columns, preparers


def _prepared(model: type[models.Model], values: dict[str, Any]) -> tuple[list[str], list[Any], list[bool]]:
    columns, preparers = _columns(model, tuple(values))
    params, first_id = [], []
    for field, value in zip(preparers, values.values(), strict=True):
        first_id.append(value is FIRST_ID)
        if value is not FIRST_ID:
            params.append(value if field is None else field.get_db_prep_save(value, connection))
    return columns, params, first_id


def prepared_values(model: type[models.Model], values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Quoted columns and database-ready parameters of ``values`` (by field name), as an INSERT would send them."""
    columns, params, _ = _prepared(model, values)
    return columns, params


def insert(model: type[models.Model], values: dict[str, Any], *, returning_id: bool = False) -> Statement:
    """``INSERT`` of one row of ``model`` (values by field name), optionally ``RETURNING`` its id."""
    columns, params, first_id = _prepared(model, values)
    placeholders = [_FIRST_ID_PLACEHOLDER if is_first else "%s" for is_first in first_id]
    quote = connection.ops.quote_name
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) VALUES ({', '.join(placeholders)})"
    if returning_id:
        assert model._meta.pk is not None
        sql += f" RETURNING {quote(_column(model._meta.pk))}"
    return Statement(sql, tuple(params), returns_id=returning_id)


def insert_many(model: type[models.Model], rows: list[dict[str, Any]]) -> Statement:
    """One ``INSERT`` of several rows (each with the same fields), which get their ids in the order given.

    Separate INSERTs joined by ``WITH`` run in no set order, so rows whose order matters go in one.
    """
    names = tuple(rows[0])
    columns, _ = _columns(model, names)
    params: list[Any] = []
    for row in rows:
        params.extend(_prepared(model, row)[1])
    one = f"({', '.join(['%s'] * len(names))})"
    table = connection.ops.quote_name(model._meta.db_table)
    return Statement(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * len(rows))}", tuple(params))


def update(model: type[models.Model], values: dict[str, Any], *, where: dict[str, Any]) -> Statement:
    """``UPDATE`` of ``model`` rows matching every ``where`` field = value."""
    set_columns, set_params, _ = _prepared(model, values)
    where_columns, where_params, _ = _prepared(model, where)
    set_sql = ", ".join(f"{column} = %s" for column in set_columns)
    where_sql = " AND ".join(f"{column} = %s" for column in where_columns)
    table = connection.ops.quote_name(model._meta.db_table)
    return Statement(f"UPDATE {table} SET {set_sql} WHERE {where_sql}", (*set_params, *where_params))


def run_together(statements: Sequence[Statement]) -> list[int]:
    """Run ``statements`` atomically, in one round trip on PostgreSQL; the ids those with ``returns_id`` return."""
    returning = [i for i, statement in enumerate(statements) if statement.returns_id]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            clauses = ", ".join(
                f"s{i} AS ({statement.sql.replace(_FIRST_ID_PLACEHOLDER, '(SELECT * FROM s0)')})"
                for i, statement in enumerate(statements)
            )
            tail = ", ".join(f"(SELECT * FROM s{i})" for i in returning) or "1"
            cursor.execute(f"WITH {clauses} SELECT {tail}", [param for s in statements for param in s.params])
            row = cursor.fetchone()
            return list(row) if returning else []
        ids: list[int] = []
        with transaction.atomic():
            for statement in statements:
                sql = statement.sql
                if _FIRST_ID_PLACEHOLDER in sql:
                    sql = sql.replace(_FIRST_ID_PLACEHOLDER, str(int(ids[0])))
                cursor.execute(sql, statement.params)
                if statement.returns_id:
                    ids.append(cursor.fetchone()[0])
        return ids
