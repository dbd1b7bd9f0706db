"""Token search parameters: codes with an optional system (Coding, CodeableConcept, Identifier, code...).

Index rows: one per coding or identifier, with its display text (for ``:text``) and, for an
Identifier, one row per ``Identifier.type`` coding (for ``:of-type``).

Matching follows R4 search.html#token, and is the one token matcher of fhir-bridge (the catalogue's
counts use it too): ``code`` matches that code in any system, ``system|code`` that code in that
system, ``|code`` that code with no system, and ``system|`` any code of that system.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.parameter_types.patterns import like_prefix
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.search.values import indexed_text, normalize_string
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {"text": None, "type_system": None, "type_code": None}


# index rows -----------------------------------------------------------------------------------
def _coding_entry(coding: dict[str, Any], text: str | None = None) -> Entry:
    display = text or coding.get("display")
    return {
        "system": coding.get("system"),
        "code": coding.get("code"),
        "text": indexed_text(display) if display else None,
    }


def _concept_entries(value: dict[str, Any]) -> Iterator[Entry]:
    """A CodeableConcept: one row per coding; its text alone when it has no coding."""
    for coding in value.get("coding", []):
        yield _coding_entry(coding, value.get("text"))
    if not value.get("coding") and value.get("text"):
        yield {"system": None, "code": None, "text": indexed_text(value["text"])}


def _identifier_entries(value: dict[str, Any]) -> Iterator[Entry]:
    """An Identifier or ContactPoint: one row per ``type`` coding, so that ``:of-type`` finds each."""
    kind: dict[str, Any] = value["type"] if isinstance(value.get("type"), dict) else {}
    text = indexed_text(kind["text"]) if kind.get("text") else None
    entry = {"system": value.get("system"), "code": str(value["value"]), "text": text}
    for coding in kind.get("coding") or [{}]:
        yield entry | {"type_system": coding.get("system"), "type_code": coding.get("code")}


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    value = item.value
    if isinstance(value, bool):
        yield {"system": None, "code": "true" if value else "false", "text": None}
    elif isinstance(value, str | int | float):
        yield {"system": None, "code": str(value), "text": None}
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            yield from _concept_entries(value)
        elif "value" in value and "code" not in value:
            yield from _identifier_entries(value)
        elif "code" in value or "system" in value:  # Coding
            yield _coding_entry(value)


# the token matcher ----------------------------------------------------------------------------
def token_match(system: ColumnElement[Any], code: ColumnElement[Any], value: str) -> ColumnElement[bool]:
    """One token value on a (system, code) column pair, with the FHIR semantics (see the module)."""
    if "|" not in value:
        return code == value
    wanted_system, _, wanted_code = value.partition("|")
    conditions = [system.is_(None) if wanted_system == "" else system == wanted_system]
    if wanted_code:
        conditions.append(code == wanted_code)
    return and_(*conditions)


@dataclass(frozen=True)
class TokenTerm:
    """Token values ORed on one system: ``system``'s ``codes`` (any code when empty).

    ``system`` None is any system, unless ``no_system``: then only codes without one match. The
    terms of a search's values are its plan (``search.shapes``): the SQL depends on the fields
    that are None or not, ``no_system`` and how many codes, never on the values themselves.
    """

    system: str | None
    no_system: bool
    codes: tuple[str, ...]


def token_terms(values: Sequence[str]) -> tuple[TokenTerm, ...]:
    """Token values (see the module) as terms: the codes wanted in one system grouped in one term."""
    others: list[TokenTerm] = []
    codes_by_system: dict[str | None, list[str]] = {}
    for value in values:
        wanted_system, bar, wanted_code = value.partition("|")
        if not bar:
            codes_by_system.setdefault(None, []).append(value)
        elif wanted_system and wanted_code:
            codes_by_system.setdefault(wanted_system, []).append(wanted_code)
        else:  # |code, system| or |
            codes = (wanted_code,) if wanted_code else ()
            others.append(TokenTerm(wanted_system or None, wanted_system == "", codes))
    grouped = [TokenTerm(system, False, tuple(codes)) for system, codes in codes_by_system.items()]
    return (*others, *grouped)


def token_condition(
    system: ColumnElement[Any], code: ColumnElement[Any], terms: Sequence[TokenTerm]
) -> ColumnElement[bool]:
    """Token terms ORed, each ``system = ? AND code IN (...)``.

    An OR of many ``(system = ? AND code = ?)`` terms makes both planners give up the index and
    scan the parameter's rows; an IN list per system is answered from the (system, code) index.
    """
    alternatives = []
    for term in terms:
        conditions: list[ColumnElement[bool]] = []
        if term.no_system:
            conditions.append(system.is_(None))
        elif term.system is not None:
            conditions.append(system == term.system)
        if len(term.codes) == 1:
            conditions.append(code == term.codes[0])
        elif term.codes:
            conditions.append(code.in_(term.codes))
        alternatives.append(conditions[0] if len(conditions) == 1 else and_(*conditions))
    return alternatives[0] if len(alternatives) == 1 else or_(*alternatives)


def token_any(system: ColumnElement[Any], code: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    """Token values ORed, as IN lists grouped by system (``token_condition``)."""
    return token_condition(system, code, token_terms(values))


# predicates -----------------------------------------------------------------------------------
def _of_type(table: FromClause, value: str, parameter: str) -> ColumnElement[bool]:
    parts = value.split("|")
    if len(parts) != 3:
        raise FhirError(400, f"{parameter}:of-type takes system|code|value", code="invalid", expression=parameter)
    type_system, type_code, identifier = parts
    return and_(table.c.type_system == type_system, table.c.type_code == type_code, table.c.code == identifier)


def _value_matches(table: FromClause, value: str, modifier: str | None, parameter: str) -> ColumnElement[bool]:
    if modifier == "text":
        return like_prefix(table.c.text, normalize_string(value))
    if modifier == "of-type":
        return _of_type(table, value, parameter)
    return token_match(table.c.system, table.c.code, value)


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[TokenTerm, ...] | None:
    """The plan of ``values`` (``search.shapes``); None under a modifier that compiles them directly."""
    return token_terms(values) if criterion.modifier in (None, "not") else None


def terms_matches(table: FromClause, terms: tuple[TokenTerm, ...]) -> ColumnElement[bool]:
    return token_condition(table.c.system, table.c.code, terms)


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    if criterion.modifier in (None, "not"):
        return token_any(table.c.system, table.c.code, values)
    name = criterion.parameter.code
    return or_(*(_value_matches(table, value, criterion.modifier, name) for value in values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.code
