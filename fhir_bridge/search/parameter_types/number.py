"""Number search parameters: decimals and integers.

Index rows: the value and the range its precision implies (``100`` stands for [99.5, 100.5)), so that
an ``eq`` search matches as R4 search.html#number says: within the searched value's precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import number_range, split_prefix
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    found = number_range(item.value) if not isinstance(item.value, dict | list | bool) else None
    if found:
        yield {"value": found[0], "low": found[1], "high": found[2]}


def number_condition(column: ColumnElement[Any], value: str, parameter: str) -> ColumnElement[bool]:
    """One searched number (with its prefix) on a value column (a number's, or a quantity's)."""
    prefix, text = split_prefix(value)
    found = number_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a number for {parameter!r}", code="invalid", expression=parameter)
    exact, low, high = found
    comparisons: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: and_(column >= low, column < high),
        "ne": lambda: or_(column < low, column >= high),
        "gt": lambda: column > exact,
        "lt": lambda: column < exact,
        "ge": lambda: column >= exact,
        "le": lambda: column <= exact,
        "sa": lambda: column > exact,
        "eb": lambda: column < exact,
        "ap": lambda: and_(column >= exact - abs(exact) * 0.1, column <= exact + abs(exact) * 0.1),
    }
    return comparisons[prefix]()


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    name = criterion.parameter.code
    return or_(*(number_condition(table.c.value, value, name) for value in values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.value
