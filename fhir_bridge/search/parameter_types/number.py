"""Number search parameters: decimals and integers.

Index rows: the value and the range its precision implies (``100`` stands for [99.5, 100.5)), so that
an ``eq`` search matches as R4 search.html#number says: within the searched value's precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import Prefix, number_range, split_prefix
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    found = number_range(item.value) if not isinstance(item.value, dict | list | bool) else None
    if found:
        yield {"value": found[0], "low": found[1], "high": found[2]}


@dataclass(frozen=True)
class NumberTerm:
    """One searched number as a plan (``search.shapes``): its prefix decides the SQL; bound are the
    number and a range: its precision's [low, high) for ``eq``/``ne``, the number +-10 % for ``ap``."""

    prefix: Prefix
    exact: float
    low: float
    high: float


def number_term(value: str, parameter: str) -> NumberTerm:
    """One searched number (with its prefix) as a term."""
    prefix, text = split_prefix(value)
    found = number_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a number for {parameter!r}", code="invalid", expression=parameter)
    exact, low, high = found
    if prefix == "ap":
        low, high = exact - abs(exact) * 0.1, exact + abs(exact) * 0.1
    return NumberTerm(Prefix(prefix), exact, low, high)


def term_condition(column: ColumnElement[Any], term: NumberTerm) -> ColumnElement[bool]:
    """One searched number (as a term, its values maybe placeholders) on a value column."""
    exact, low, high = term.exact, term.low, term.high
    comparisons: dict[Prefix, Callable[[], ColumnElement[bool]]] = {
        Prefix.EQ: lambda: and_(column >= low, column < high),
        Prefix.NE: lambda: or_(column < low, column >= high),
        Prefix.GT: lambda: column > exact,
        Prefix.LT: lambda: column < exact,
        Prefix.GE: lambda: column >= exact,
        Prefix.LE: lambda: column <= exact,
        Prefix.SA: lambda: column > exact,
        Prefix.EB: lambda: column < exact,
        Prefix.AP: lambda: and_(column >= low, column <= high),
    }
    return comparisons[term.prefix]()


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[NumberTerm, ...]:
    """The plan of ``values`` (``search.shapes``): one term per value, ORed."""
    return tuple(number_term(value, criterion.parameter.code) for value in values)


def terms_matches(table: FromClause, terms: tuple[NumberTerm, ...]) -> ColumnElement[bool]:
    return or_(*(term_condition(table.c.value, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.value
