"""Date search parameters: date, dateTime, instant, Period and Timing values.

Index rows: the range of instants a value covers (``low``..``high``, microseconds, inclusive): a
partial date covers its whole period, an open Period end is unbounded. A searched value is a range
too, and each prefix compares the two ranges as R4 search.html#date says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, not_, or_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import MAX_INSTANT, MIN_INSTANT, Prefix, date_range, split_prefix
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


# index rows -----------------------------------------------------------------------------------
def _period_entry(value: dict[str, Any]) -> Entry | None:
    start = date_range(value["start"]) if "start" in value else None
    end = date_range(value["end"]) if "end" in value else None
    if not (start or end):
        return None
    return {"low": start[0] if start else MIN_INSTANT, "high": end[1] if end else MAX_INSTANT}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    value = item.value
    if isinstance(value, str):
        found = date_range(value)
        if found:
            yield {"low": found[0], "high": found[1]}
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period: open ends are unbounded
            period = _period_entry(value)
            if period:
                yield period
        for event in value.get("event", []):  # Timing
            yield from entries(Item(event))
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if bounds:
            yield from entries(Item(bounds))


# predicates -----------------------------------------------------------------------------------
def searched_range(value: str, parameter: str) -> tuple[str, int, int]:
    """(prefix, low, high) of a searched date value; ``ap`` widened by 10 % of its distance from now."""
    prefix, text = split_prefix(value)
    found = date_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a FHIR date for {parameter!r}", code="invalid", expression=parameter)
    low, high = found
    if prefix == "ap":
        margin = abs(time.time_ns() // 1000 - low) // 10
        low, high = max(MIN_INSTANT, low - margin), min(MAX_INSTANT, high + margin)
    return prefix, low, high


def compare_ranges(prefix: str, low: Any, high: Any, search_low: Any, search_high: Any) -> ColumnElement[bool]:
    """The FHIR prefix semantics between an indexed range [low, high] and a searched range.

    Each form leads with a plain bound on ``low`` or ``high`` (implied by the rest, as low <= high)
    so that an index range answers it rather than a scan of every value.
    """
    contained = and_(low >= search_low, high <= search_high)
    comparisons: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: and_(low <= search_high, contained),
        "ne": lambda: not_(contained),
        "gt": lambda: high > search_high,
        "lt": lambda: low < search_low,
        "ge": lambda: and_(high >= search_low, or_(high > search_high, contained)),
        "le": lambda: and_(low <= search_high, or_(low < search_low, contained)),
        "sa": lambda: low > search_high,
        "eb": lambda: high < search_low,
        "ap": lambda: and_(low <= search_high, high >= search_low),  # overlap of the widened range
    }
    return comparisons[prefix]()


@dataclass(frozen=True)
class DateTerm:
    """One searched date value as a plan (``search.shapes``): its prefix decides the SQL, the range of
    instants it searches (microseconds, inclusive; ``ap`` already widened) is bound."""

    prefix: Prefix
    low: int
    high: int


def date_term(value: str, parameter: str) -> DateTerm:
    prefix, low, high = searched_range(value, parameter)
    return DateTerm(Prefix(prefix), low, high)


def term_condition(low: Any, high: Any, term: DateTerm) -> ColumnElement[bool]:
    """One searched date value (as a term, its bounds maybe placeholders) on a pair of range columns."""
    return compare_ranges(term.prefix.value, low, high, term.low, term.high)


def date_condition(low: Any, high: Any, value: str, parameter: str) -> ColumnElement[bool]:
    """One searched date value on a pair of range columns (an index row's, or a version's lastUpdated)."""
    return term_condition(low, high, date_term(value, parameter))


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[DateTerm, ...]:
    """The plan of ``values`` (``search.shapes``): one term per value, ORed."""
    return tuple(date_term(value, criterion.parameter.code) for value in values)


def terms_matches(table: FromClause, terms: tuple[DateTerm, ...]) -> ColumnElement[bool]:
    return or_(*(term_condition(table.c.low, table.c.high, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.high if descending else table.c.low
