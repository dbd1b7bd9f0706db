"""Sorting and keyset paging of a search's matches.

Pages are cut by keyset (the sort values and pk of the last row of the previous page), never by
OFFSET, so a deep page costs what the first one does. A resource sorts by the least (ascending) or
greatest (descending) of its values of the sort parameter; absent values sort last either way.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from fhir_bridge.search.parameter_types import PARAMETER_TYPES
from fhir_bridge.search.query import SearchQuery, SortKey
from fhir_bridge.store.schema import INDEX_TABLES, VERSION, VERSION_COLUMNS, index_valid

SortExpressions = list[tuple[Any, bool]]  # (expression, descending) per sort key


def sort_expression(key: SortKey, at_seq: int) -> Any:
    """The value a resource sorts by: the least (ascending) or greatest (descending) of its values."""
    if key.parameter is None:
        return VERSION.c.res_id if key.name == "_id" else VERSION.c.last_updated
    table = INDEX_TABLES[key.parameter.type].alias()
    column = PARAMETER_TYPES[key.parameter.type].sort_column(table, key.descending)
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate)
        .where(table.c.res_pk == VERSION.c.res_pk, table.c.param == key.parameter.code, index_valid(table, at_seq))
        .scalar_subquery()
    )


def _equal(expression: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return expression.is_(None) if value is None else expression == value


def after_condition(expressions: SortExpressions, values: list[Any], last_pk: int) -> ColumnElement[bool]:
    """Rows after the cursor in (sort keys..., pk) order; absent values sort last either way."""
    alternatives = []
    for index, (expression, descending) in enumerate(expressions):
        equal_before = [
            _equal(expr, value) for (expr, _), value in zip(expressions[:index], values[:index], strict=True)
        ]
        value = values[index]
        if value is None:
            continue  # nothing sorts after an absent value on this key but equal ones
        after = (expression < value) if descending else (expression > value)
        alternatives.append(and_(*equal_before, or_(after, expression.is_(None))))
    all_equal = [_equal(expr, value) for (expr, _), value in zip(expressions, values, strict=True)]
    alternatives.append(and_(*all_equal, VERSION.c.res_pk > last_pk))
    return or_(*alternatives)


def page_statement(
    query: SearchQuery,
    conditions: list[ColumnElement[bool]],
    at_seq: int,
    after: tuple[tuple[Any, ...], int] | None,
    limit: int,
) -> Select[Any]:
    """The versions meeting ``conditions``, sorted, after the keyset position ``after`` (sort values
    and pk of the previous page's last row), with their sort values (the next page's cursor), at most
    ``limit`` (a page and one row more: that row tells whether a next page exists)."""
    sort = [(sort_expression(key, at_seq), key.descending) for key in query.sort]
    if after is not None:
        values, last_pk = after
        conditions = [*conditions, after_condition(sort, list(values), last_pk)]
    order = [(expression.desc() if descending else expression.asc()).nulls_last() for expression, descending in sort]
    columns = [*VERSION_COLUMNS, *(expression.label(f"sort_{i}") for i, (expression, _) in enumerate(sort))]
    statement = select(*columns).where(*conditions).order_by(*order, VERSION.c.res_pk)
    return statement.limit(limit)


def keyset_position(query: SearchQuery) -> tuple[tuple[Any, ...], int] | None:
    """The query's keyset position (sort values, pk), None on a first page."""
    if not query.after:
        return None
    return tuple(query.after.get("k", [None] * len(query.sort))), int(query.after["pk"])
