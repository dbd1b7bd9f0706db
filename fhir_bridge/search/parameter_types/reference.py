"""Reference search parameters: literal references (relative, absolute, canonical) and logical ones.

Index rows: the target's type and id for a relative or absolute literal reference, the URL for an
absolute or canonical one, and ``Reference.identifier`` (for ``:identifier``). The store also reads
these rows: they are the links its referential integrity checks and compartments follow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.search.query import Criterion
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

COLUMN_DEFAULTS: Entry = {}


def parse_reference(text: str) -> tuple[str | None, str | None]:
    """(type, id) of a relative or absolute literal reference; (None, None) for others."""
    path = text.split("?")[0]
    if path.startswith(("#", "urn:")):
        return None, None
    parts = path.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, None


def entries(item: Item, parameter: SearchParameter | None = None) -> Iterator[Entry]:
    value = item.value
    if isinstance(value, dict) and "resourceType" in value:
        # A resource where a Reference is expected (Bundle?composition and ?message: Bundle.entry[0].resource):
        # the resource lives inside the Bundle, not in the store, so there is no target to index (and a chained
        # search into it, composition.x, is not supported).
        return
    text = value.get("reference") if isinstance(value, dict) else value if isinstance(value, str) else None
    identifier = value.get("identifier") if isinstance(value, dict) else None
    if not isinstance(identifier, dict):
        identifier = None
    if text is None and not identifier:
        return
    target_type, target_id = parse_reference(text) if text else (None, None)
    if isinstance(value, dict) and target_type is None:
        target_type = value.get("type")
    yield {
        "target_type": target_type,
        "target_id": target_id,
        "url": text if text and (target_id is None or "://" in text) else None,
        "identifier_system": identifier.get("system") if identifier else None,
        "identifier_value": identifier.get("value") if identifier else None,
    }


@dataclass(frozen=True)
class ByUrl:
    """A reference by its URL (absolute or canonical), or by the type and id in it (``target_type`` set)."""

    url: str
    target_type: str | None
    target_id: str | None


@dataclass(frozen=True)
class ById:
    """A reference to ``target_id`` (of ``target_type`` when set)."""

    target_type: str | None
    target_id: str


@dataclass(frozen=True)
class ByIdentifier:
    """``:identifier``: a logical reference with this identifier (in ``system`` when set)."""

    system: str | None
    value: str


ReferenceTerm = ByUrl | ById | ByIdentifier


def _term(value: str, modifier: str | None) -> ReferenceTerm:
    """``[Type/]id``, an absolute URL, or (``:identifier``) ``[system|]value``; a type modifier
    (``subject:Patient=id``) names the target type of a bare id."""
    if modifier == "identifier":
        system, _, identifier = value.rpartition("|")
        return ByIdentifier(system or None, identifier)
    target_type, target_id = parse_reference(value) if "/" in value else (None, value)
    if target_id is None:
        return ByUrl(value, None, None)
    if "://" in value:
        return ByUrl(value, target_type, target_id)
    wanted_type = modifier if modifier and modifier[:1].isupper() else target_type
    return ById(wanted_type, target_id)


def _term_matches(table: FromClause, term: ReferenceTerm) -> ColumnElement[bool]:
    if isinstance(term, ByIdentifier):
        conditions = [table.c.identifier_value == term.value]
        if term.system is not None:
            conditions.append(table.c.identifier_system == term.system)
        return and_(*conditions)
    if isinstance(term, ByUrl):
        if term.target_id is None:
            return table.c.url == term.url
        same = and_(table.c.target_type == term.target_type, table.c.target_id == term.target_id)
        return or_(table.c.url == term.url, same)
    condition = table.c.target_id == term.target_id
    return and_(condition, table.c.target_type == term.target_type) if term.target_type is not None else condition


def terms(criterion: Criterion, values: Sequence[str]) -> tuple[ReferenceTerm, ...]:
    """The plan of ``values`` (``search.shapes``)."""
    return tuple(_term(value, criterion.modifier) for value in values)


def terms_matches(table: FromClause, terms: tuple[ReferenceTerm, ...]) -> ColumnElement[bool]:
    return or_(*(_term_matches(table, term) for term in terms))


def matches(table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
    return terms_matches(table, terms(criterion, values))


def sort_column(table: FromClause, descending: bool) -> ColumnElement[Any]:
    return table.c.target_id
