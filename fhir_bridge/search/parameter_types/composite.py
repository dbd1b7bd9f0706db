"""Composite search parameters: a token and a second component found within one element.

Every R4 composite parameter supported starts with a token (``code-value-quantity``: an
Observation's or component's code with its value). Index rows: one per (token, second value) pair
of one element, so that ``code$value`` matches both on the same component, never a code of one
component with the value of another. The second component is a token, string, reference,
quantity or date, stored in the ``c2_*`` columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.parameter_types import date, number, quantity, reference, string, token, uri
from fhir_bridge.search.parameter_types.patterns import like_prefix
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import normalize_string
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {"c2_system": None, "c2_code": None, "c2_text": None, "c2_low": None, "c2_high": None}

_COMPONENT_ENTRIES: dict[str, Callable[[Item], Iterator[Entry]]] = {
    "string": string.entries,
    "token": token.entries,
    "date": date.entries,
    "number": number.entries,
    "quantity": quantity.entries,
    "reference": reference.entries,
    "uri": uri.entries,
}


# index rows -----------------------------------------------------------------------------------
def _second_columns(second_type: str, other: Entry) -> Entry:
    """The ``c2_*`` columns of the second component's index row."""
    if second_type == "token":
        return {"c2_system": other["system"], "c2_code": other["code"]}
    if second_type == "string":
        return {"c2_text": other["value"]}
    if second_type == "reference":
        return {"c2_code": other["target_type"], "c2_text": other["target_id"] or other["url"]}
    if second_type == "quantity":
        low = other["value"] if other["value"] is not None else other["low"]
        high = other["value"] if other["value"] is not None else other["high"]
        return {"c2_system": other["system"], "c2_code": other["code"], "c2_low": low, "c2_high": high}
    return {"c2_low": float(other["low"]), "c2_high": float(other["high"])}  # date


def entries(item: Item, parameter: SearchParameter) -> Iterator[Entry]:
    """Pairs of (token, second component) found within ``item``, e.g. one Observation.component."""
    (_, first), (second_type, second) = parameter.components
    tokens = [e for found in first([item]) for e in token.entries(found)]
    seconds = [e for found in second([item]) for e in _COMPONENT_ENTRIES[second_type](found)]
    for first_entry in tokens:
        for other in seconds:
            yield {"c1_system": first_entry["system"], "c1_code": first_entry["code"]} | _second_columns(
                second_type, other
            )


# predicates -----------------------------------------------------------------------------------
def _second_matches(table: FromClause, second_type: str, value: str, parameter: str) -> ColumnElement[bool]:
    if second_type == "token":
        return token.token_match(table.c.c2_system, table.c.c2_code, value)
    if second_type == "string":
        return like_prefix(table.c.c2_text, normalize_string(value))
    if second_type == "reference":
        target_type, target_id = reference.parse_reference(value) if "/" in value else (None, value)
        condition = table.c.c2_text == target_id
        return and_(condition, table.c.c2_code == target_type) if target_type else condition
    if second_type == "quantity":
        return quantity.quantity_condition(table.c.c2_low, table.c.c2_system, table.c.c2_code, value, parameter)
    return date.date_condition(table.c.c2_low, table.c.c2_high, value, parameter)


def _value_matches(table: FromClause, criterion: Criterion, value: str) -> ColumnElement[bool]:
    parameter = criterion.parameter
    first, separator, second = value.partition("$")
    if not separator:
        raise FhirError(
            400, f"{parameter.code} takes two values joined by $", code="invalid", expression=parameter.code
        )
    second_type = parameter.components[1][0]
    first_matches = token.token_match(table.c.c1_system, table.c.c1_code, first)
    return and_(first_matches, _second_matches(table, second_type, second, parameter.code))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return or_(*(_value_matches(table, criterion, value) for value in values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    raise ValueError("composite parameters are not sortable (the query parser refuses them)")
