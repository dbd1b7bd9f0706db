"""String search parameters: names, addresses, plain strings.

Index rows: one per textual part (a HumanName gives its family, given, text...), normalised (case-
and accent-free) for the default and ``:contains`` searches, and as written for ``:exact``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, or_

from fhir_bridge.search.parameter_types.patterns import contains_pattern, in_range, like, prefix_range
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


class Match(enum.Enum):
    """How a searched string matches: structure of its plan (``search.shapes``)."""

    STARTS = "starts"  # the default: the normalised value starts with it
    EXACT = "exact"
    CONTAINS = "contains"


@dataclass(frozen=True)
class StringTerm:
    """One searched string as a plan: how it matches, and what is bound: the exact text, the LIKE
    pattern (``:contains``), or the normalised prefix's range [text, upper)."""

    match: Match
    text: str
    upper: str | None


def _term(value: str, modifier: str | None) -> StringTerm:
    if modifier == "exact":
        return StringTerm(Match.EXACT, value, None)
    if modifier == "contains":
        return StringTerm(Match.CONTAINS, contains_pattern(normalize_string(value)), None)
    return StringTerm(Match.STARTS, *prefix_range(normalize_string(value)))


def _term_matches(table: FromClause, term: StringTerm) -> ColumnElement[bool]:
    if term.match is Match.EXACT:
        return table.c.exact == term.text
    if term.match is Match.CONTAINS:
        return like(table.c.value, term.text)
    return in_range(table.c.value, term.text, term.upper)


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[StringTerm, ...]:
    """The plan of ``values`` (``search.shapes``): one term per value, ORed."""
    return tuple(_term(value, criterion.modifier) for value in values)


def terms_matches(table: FromClause, terms: tuple[StringTerm, ...]) -> ColumnElement[bool]:
    return or_(*(_term_matches(table, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.value
