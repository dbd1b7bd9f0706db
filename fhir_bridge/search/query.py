"""Parse a FHIR search into criteria and compile it into one SQL statement over the index tables.

Each search parameter becomes ``resource.pk IN (SELECT res_pk FROM idx_<type> WHERE ...)``;
repeated parameters are ANDed, comma-separated values ORed, as the FHIR search spec says.
Results are ordered by ``resource.pk`` and paged by keyset (``pk > last seen``), so a deep page
costs what the first one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, not_, or_, select

from fhir_bridge.errors import FhirError
from fhir_bridge.search.index import parse_reference
from fhir_bridge.search.values import MAX_INSTANT, MIN_INSTANT, date_range, normalize_string, number_range
from fhir_bridge.spec.registry import SearchParameter, search_parameters
from fhir_bridge.store.tables import INDEX_TABLES, RESOURCE

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Presentation parameters that the HTTP layer handles.
PRESENTATION_PARAMETERS = frozenset({"_format", "_pretty"})
SUPPORTED_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
}


@dataclass(frozen=True)
class Criterion:
    """One ``name[:modifier]=v1,v2`` of a search: the values are ORed."""

    parameter: SearchParameter
    modifier: str | None
    values: tuple[str, ...]


@dataclass
class SearchQuery:
    resource_type: str | None
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 20
    after_pk: int = 0
    total: str = "none"
    warnings: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # what the search applied (its self link)


def _split_values(raw: str) -> tuple[str, ...]:
    """Split at commas not escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    values, current, escaped = [], [], False
    for char in raw:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return tuple(values)


def parse_search(
    resource_type: str | None,
    parameters: list[tuple[str, str]],
    *,
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchQuery:
    """Build a SearchQuery; unknown parameters are warnings, or errors when ``strict``."""
    query = SearchQuery(resource_type=resource_type, count=default_count)
    known = search_parameters(resource_type or "Resource")
    for name, raw in parameters:
        if name in PRESENTATION_PARAMETERS:
            continue
        if name == "_count":
            query.count = parse_count(raw, max_count)
            query.used.append((name, raw))
            continue
        if name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise FhirError(
                    400, f"_total must be none, estimate or accurate, not {raw!r}", code="invalid", expression="_total"
                )
            query.total = raw
            query.used.append((name, raw))
            continue
        code, _, modifier = name.partition(":")
        parameter = known.get(code)
        problem = None
        if parameter is None and code.startswith("_") and code not in known:
            problem = f"{code} is not supported"
        elif parameter is None:
            problem = f"unknown search parameter {code!r} for {resource_type or 'a system search'}"
        elif parameter.type not in SUPPORTED_MODIFIERS or (
            parameter.evaluate is None and code not in ("_id", "_lastUpdated")
        ):
            problem = f"search parameter {code!r} ({parameter.type}) is not supported"
        elif (
            modifier
            and modifier not in SUPPORTED_MODIFIERS[parameter.type]
            and not (parameter.type == "reference" and modifier[:1].isupper())
        ):
            problem = f"modifier :{modifier} is not supported for {code!r}"
        if problem:
            if strict:
                raise FhirError(400, problem, code="not-supported", expression=name)
            query.warnings.append(problem + "; ignored")
            continue
        query.criteria.append(Criterion(parameter, modifier or None, _split_values(raw)))
        query.used.append((name, raw))
    return query


def parse_count(raw: str, max_count: int) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise FhirError(
            400, f"_count must be a whole number, not {raw!r}", code="invalid", expression="_count"
        ) from None
    if count < 0:
        raise FhirError(400, "_count must not be negative", code="invalid", expression="_count")
    return min(count, max_count)


def _prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare_ranges(prefix: str, low: Any, high: Any, search_low: Any, search_high: Any) -> ColumnElement[bool]:
    """The FHIR prefix semantics between an indexed range [low, high] and a searched range."""
    contained = and_(low >= search_low, high <= search_high)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return high > search_high
    if prefix == "lt":
        return low < search_low
    if prefix == "ge":
        return or_(high > search_high, contained)
    if prefix == "le":
        return or_(low < search_low, contained)
    if prefix == "sa":
        return low > search_high
    if prefix == "eb":
        return high < search_low
    # ap: overlaps the searched range widened by 10 % of its distance from now
    return and_(low <= search_high, high >= search_low)


def _date_condition(table: Any, value: str, parameter: str) -> ColumnElement[bool]:
    prefix, text = _prefix(value)
    found = date_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a FHIR date for {parameter!r}", code="invalid", expression=parameter)
    low, high = found
    if prefix == "ap":
        now = time.time_ns() // 1000
        margin = abs(now - low) // 10
        low, high = max(MIN_INSTANT, low - margin), min(MAX_INSTANT, high + margin)
    return _compare_ranges(prefix, table.c.low, table.c.high, low, high)


def _number_condition(table: Any, value: str, parameter: str) -> ColumnElement[bool]:
    prefix, text = _prefix(value)
    found = number_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a number for {parameter!r}", code="invalid", expression=parameter)
    exact, low, high = found
    column = table.c.value
    return {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "gt": column > exact,
        "lt": column < exact,
        "ge": column >= exact,
        "le": column <= exact,
        "sa": column > exact,
        "eb": column < exact,
        "ap": and_(column >= exact - abs(exact) * 0.1, column <= exact + abs(exact) * 0.1),
    }[prefix]


def _quantity_condition(table: Any, value: str, parameter: str) -> ColumnElement[bool]:
    number, _, rest = value.partition("|")
    system, _, code = rest.partition("|") if "|" in rest else ("", "", rest)
    conditions = [_number_condition(table, number, parameter)]
    if system:
        conditions.append(table.c.system == system)
    if code:
        conditions.append(table.c.code == code)
    return and_(*conditions)


def _token_condition(table: Any, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "text":
        return table.c.text.like(_escape_like(normalize_string(value)) + "%", escape="\\")
    if "|" not in value:
        return table.c.code == value
    system, _, code = value.partition("|")
    conditions = [table.c.system.is_(None) if system == "" else table.c.system == system]
    if code:
        conditions.append(table.c.code == code)
    return and_(*conditions)


def _string_condition(table: Any, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value
    pattern = _escape_like(normalize_string(value))
    if modifier == "contains":
        return table.c.value.like(f"%{pattern}%", escape="\\")
    return table.c.value.like(f"{pattern}%", escape="\\")


def _reference_condition(table: Any, value: str, criterion: Criterion) -> ColumnElement[bool]:
    if criterion.modifier == "identifier":
        system, _, identifier = value.rpartition("|")
        conditions = [table.c.identifier_value == identifier]
        if system:
            conditions.append(table.c.identifier_system == system)
        return and_(*conditions)
    target_type, target_id = parse_reference(value) if "/" in value else (None, value)
    if target_id is None:
        return table.c.url == value
    if "://" in value:
        return or_(table.c.url == value, and_(table.c.target_type == target_type, table.c.target_id == target_id))
    wanted_type = criterion.modifier if criterion.modifier and criterion.modifier[:1].isupper() else target_type
    condition = table.c.target_id == target_id
    return and_(condition, table.c.target_type == wanted_type) if wanted_type else condition


def _uri_condition(table: Any, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "below":
        return table.c.uri.like(_escape_like(value) + "%", escape="\\")
    if modifier == "above":
        return literal(value).like(table.c.uri + "%")
    return table.c.uri == value


def _value_condition(table: Any, criterion: Criterion, value: str) -> ColumnElement[bool]:
    kind, name = criterion.parameter.type, criterion.parameter.code
    if kind == "token":
        return _token_condition(table, value, criterion.modifier)
    if kind == "string":
        return _string_condition(table, value, criterion.modifier)
    if kind == "date":
        return _date_condition(table, value, name)
    if kind == "number":
        return _number_condition(table, value, name)
    if kind == "quantity":
        return _quantity_condition(table, value, name)
    if kind == "reference":
        return _reference_condition(table, value, criterion)
    return _uri_condition(table, value, criterion.modifier)


def _row_condition(criterion: Criterion) -> ColumnElement[bool]:
    """``_id`` and ``_lastUpdated`` are columns of the resource row."""
    if criterion.parameter.code == "_id":
        condition = RESOURCE.c.res_id.in_(criterion.values)
        return not_(condition) if criterion.modifier == "not" else condition
    conditions = []
    for value in criterion.values:
        prefix, text = _prefix(value)
        found = date_range(text)
        if found is None:
            raise FhirError(
                400, f"{text!r} is not a FHIR date for '_lastUpdated'", code="invalid", expression="_lastUpdated"
            )
        column = RESOURCE.c.last_updated
        conditions.append(_compare_ranges(prefix, column, column, *found))
    return or_(*conditions)


def _criterion_condition(criterion: Criterion) -> ColumnElement[bool]:
    parameter = criterion.parameter
    if parameter.code in ("_id", "_lastUpdated"):
        return _row_condition(criterion)
    table = INDEX_TABLES[parameter.type]
    scope = [table.c.param == parameter.code]
    if parameter.resource_type != "Resource":
        scope.insert(0, table.c.res_type == parameter.resource_type)
    if criterion.modifier == "missing":
        has_any = RESOURCE.c.pk.in_(select(table.c.res_pk).where(*scope))
        wants_missing = criterion.values[-1].lower() == "true"
        return not_(has_any) if wants_missing else has_any
    matches = or_(*(_value_condition(table, criterion, value) for value in criterion.values if value != ""))
    if criterion.modifier == "not":
        return RESOURCE.c.pk.not_in(select(table.c.res_pk).where(*scope, matches))
    return RESOURCE.c.pk.in_(select(table.c.res_pk).where(*scope, matches))


def compile_search(query: SearchQuery, *, counting: bool = False) -> Select[Any]:
    """One SELECT over ``resource`` (or its COUNT) for the query."""
    conditions: list[ColumnElement[bool]] = [RESOURCE.c.deleted.is_(False)]
    if query.resource_type:
        conditions.append(RESOURCE.c.res_type == query.resource_type)
    for criterion in query.criteria:
        if all(value == "" for value in criterion.values):
            continue  # an empty value is ignored, as the spec allows
        conditions.append(_criterion_condition(criterion))
    if counting:
        return select(func.count()).select_from(RESOURCE).where(*conditions)
    if query.after_pk:
        conditions.append(RESOURCE.c.pk > query.after_pk)
    columns = (
        RESOURCE.c.res_type,
        RESOURCE.c.res_id,
        RESOURCE.c.version,
        RESOURCE.c.seq,
        RESOURCE.c.last_updated,
        RESOURCE.c.deleted,
        RESOURCE.c.content,
        RESOURCE.c.pk,
    )
    statement = select(*columns).where(*conditions).order_by(RESOURCE.c.pk)
    return statement.limit(query.count + 1)  # one more tells whether a next page exists
