"""Quantity search parameters: Quantity (and Money, Range) values, ``[prefix]number|system|code``.

Index rows: the value with its precision range and its unit (code, else unit text, else currency);
a Range gives its low and high ends with no single value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.search.parameter_types.number import NumberTerm, number_term
from fhir_bridge.search.parameter_types.number import term_condition as number_term_condition
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import number_range
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def _range_entry(value: dict[str, Any]) -> Entry:
    low = number_range(value.get("low", {}).get("value")) if "low" in value else None
    high = number_range(value.get("high", {}).get("value")) if "high" in value else None
    unit = value.get("low") or value.get("high") or {}
    return {
        "system": unit.get("system"),
        "code": unit.get("code") or unit.get("unit"),
        "value": None,
        "low": low[1] if low else None,
        "high": high[2] if high else None,
    }


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    value = item.value
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:
        yield _range_entry(value)
        return
    found = number_range(value.get("value")) if "value" in value else None
    if found:
        yield {
            "system": value.get("system"),
            "code": value.get("code") or value.get("unit") or value.get("currency"),
            "value": found[0],
            "low": found[1],
            "high": found[2],
        }


@dataclass(frozen=True)
class QuantityTerm:
    """One searched quantity as a plan (``search.shapes``): its number, and the unit's system and
    code when given (whether each is given decides the SQL; their text is bound)."""

    number: NumberTerm
    system: str | None
    unit: str | None


def quantity_term(value: str, parameter: str) -> QuantityTerm:
    """``[prefix]number[|system|code]`` as a term."""
    number, _, rest = value.partition("|")
    unit_system, _, unit = rest.partition("|") if "|" in rest else ("", "", rest)
    return QuantityTerm(number_term(number, parameter), unit_system or None, unit or None)


def term_condition(value_column: Any, system: Any, code: Any, term: QuantityTerm) -> ColumnElement[bool]:
    """One searched quantity (as a term, its values maybe placeholders) on value and unit columns."""
    conditions = [number_term_condition(value_column, term.number)]
    if term.system is not None:
        conditions.append(system == term.system)
    if term.unit is not None:
        conditions.append(code == term.unit)
    return and_(*conditions)


def quantity_condition(value_column: Any, system: Any, code: Any, value: str, parameter: str) -> ColumnElement[bool]:
    """``[prefix]number[|system|code]`` on value and unit columns (a quantity row's or a composite's)."""
    return term_condition(value_column, system, code, quantity_term(value, parameter))


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[QuantityTerm, ...]:
    """The plan of ``values`` (``search.shapes``): one term per value, ORed."""
    return tuple(quantity_term(value, criterion.parameter.code) for value in values)


def terms_matches(table: FromClause, terms: tuple[QuantityTerm, ...]) -> ColumnElement[bool]:
    return or_(*(term_condition(table.c.value, table.c.system, table.c.code, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.value
