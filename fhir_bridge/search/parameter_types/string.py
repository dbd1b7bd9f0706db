"""String search parameters: names, addresses, plain strings.

Index rows: one per textual part (a HumanName gives its family, given, text...), normalised (case-
and accent-free) for the default and ``:contains`` searches, and as written for ``:exact``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, or_

from fhir_bridge.search.parameter_types.patterns import like_contains, starts_with
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import MAX_INDEXED_STRING, indexed_text, normalize_string
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}
_NOT_SEARCHED = ("use", "period", "extension", "id", "type")  # parts of a HumanName, Address... that are no text


def strings(value: Any) -> Iterator[str]:
    """Every textual part of ``value`` (a string, or a HumanName, Address... with nested strings)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, part in value.items():
            if key not in _NOT_SEARCHED:
                yield from strings(part)
    elif isinstance(value, list):
        for part in value:
            yield from strings(part)


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    for text in strings(item.value):
        yield {"value": indexed_text(text), "exact": text[:MAX_INDEXED_STRING]}


def _value_matches(table: FromClause, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value
    if modifier == "contains":
        return like_contains(table.c.value, normalize_string(value))
    return starts_with(table.c.value, normalize_string(value))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(_value_matches(table, value, criterion.modifier) for value in values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.value
