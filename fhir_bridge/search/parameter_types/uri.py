"""URI search parameters: uri, url and canonical values, matched whole or (``:below``, ``:above``) by prefix."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, literal, or_

from fhir_bridge.search.parameter_types.patterns import like_prefix
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    if isinstance(item.value, str):
        yield {"uri": item.value}


def _value_matches(table: FromClause, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "below":
        return like_prefix(table.c.uri, value)
    if modifier == "above":  # the stored uri is a prefix of the searched one
        return literal(value).like(table.c.uri + "%")
    return table.c.uri == value


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(_value_matches(table, value, criterion.modifier) for value in values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.uri
