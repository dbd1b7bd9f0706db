"""URI search parameters: uri, url and canonical values, matched whole or (``:below``, ``:above``) by prefix."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Text, or_, type_coerce

from fhir_bridge.search.parameter_types.patterns import like, prefix_pattern
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    if isinstance(item.value, str):
        yield {"uri": item.value}


class Match(enum.Enum):
    """How a searched uri matches: structure of its plan (``search.shapes``)."""

    EQUAL = "equal"
    BELOW = "below"  # the stored uri starts with the searched one (bound as a LIKE pattern)
    ABOVE = "above"  # the stored uri is a prefix of the searched one


@dataclass(frozen=True)
class UriTerm:
    """One searched uri as a plan: how it matches, and the bound text (the uri, or ``:below``'s pattern)."""

    match: Match
    text: str


def _term(value: str, modifier: str | None) -> UriTerm:
    if modifier == "below":
        return UriTerm(Match.BELOW, prefix_pattern(value))
    if modifier == "above":
        return UriTerm(Match.ABOVE, value)
    return UriTerm(Match.EQUAL, value)


def _term_matches(table: FromClause, term: UriTerm) -> ColumnElement[bool]:
    if term.match is Match.BELOW:
        return like(table.c.uri, term.text)
    if term.match is Match.ABOVE:
        return type_coerce(term.text, Text).like(table.c.uri + "%")
    return table.c.uri == term.text


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[UriTerm, ...]:
    """The plan of ``values`` (``search.shapes``): one term per value, ORed."""
    return tuple(_term(value, criterion.modifier) for value in values)


def terms_matches(table: FromClause, terms: tuple[UriTerm, ...]) -> ColumnElement[bool]:
    return or_(*(_term_matches(table, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.uri
