"""Compile a ``SearchQuery`` into one SQL statement over the version and index tables.

A search is answered as of one commit (``at_seq``): a version or index row counts when it was
written at or before that seq and not replaced by then. The first page fixes ``at_seq``; the
following pages keep it, so paging sees one consistent state however many writes happen
meanwhile. Every clause becomes ``res_pk IN (SELECT res_pk FROM idx_<type> WHERE ...)``;
repeated parameters are ANDed, comma-separated values ORed. Pages are cut by keyset (sort
values and pk of the last row), never by OFFSET, so a deep page costs what the first one does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, exists, false, func, literal, not_, or_, select, true, tuple_

from fhir_bridge.errors import FhirError
from fhir_bridge.search.index import parse_reference
from fhir_bridge.search.query import (
    PREFIXES,
    Chain,
    Clause,
    Criterion,
    Include,
    ReverseChain,
    SearchQuery,
    SortKey,
)
from fhir_bridge.search.values import MAX_INSTANT, MIN_INSTANT, date_range, normalize_string, number_range
from fhir_bridge.spec.registry import patient_compartment
from fhir_bridge.store.tables import DATE_WIDTH, INDEX_TABLES, REFERENCE, VERSION

VERSION_COLUMNS = (
    VERSION.c.res_type,
    VERSION.c.res_id,
    VERSION.c.version,
    VERSION.c.seq,
    VERSION.c.last_updated,
    VERSION.c.deleted,
    VERSION.c.content,
    VERSION.c.method,
    VERSION.c.res_pk,
)


def version_valid(at_seq: int, table: Table = VERSION) -> ColumnElement[bool]:
    """The version of each resource that was current at ``at_seq`` (deletions included)."""
    return and_(table.c.seq <= at_seq, or_(table.c.superseded.is_(None), table.c.superseded > at_seq))


def index_valid(table: Table, at_seq: int) -> ColumnElement[bool]:
    return and_(table.c.seq_from <= at_seq, or_(table.c.seq_to.is_(None), table.c.seq_to > at_seq))


# values -------------------------------------------------------------------------------------
def _prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


_LAST_CODE_POINT = chr(0x10FFFF)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compare_ranges(prefix: str, low: Any, high: Any, search_low: Any, search_high: Any) -> ColumnElement[bool]:
    """The FHIR prefix semantics between an indexed range [low, high] and a searched range.

    Each form leads with a plain bound on ``low`` or ``high`` (implied by the rest, as low <= high)
    so that an index range answers it rather than a scan of every value.
    """
    contained = and_(low >= search_low, high <= search_high)
    return {
        "eq": lambda: and_(low <= search_high, contained),
        "ne": lambda: not_(contained),
        "gt": lambda: high > search_high,
        "lt": lambda: low < search_low,
        "ge": lambda: and_(high >= search_low, or_(high > search_high, contained)),
        "le": lambda: and_(low <= search_high, or_(low < search_low, contained)),
        "sa": lambda: low > search_high,
        "eb": lambda: high < search_low,
        "ap": lambda: and_(low <= search_high, high >= search_low),  # overlap of the widened range
    }[prefix]()


def _date_range(value: str, parameter: str) -> tuple[str, int, int]:
    prefix, text = _prefix(value)
    found = date_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a FHIR date for {parameter!r}", code="invalid", expression=parameter)
    low, high = found
    if prefix == "ap":  # approximately: widened by 10 % of its distance from now
        margin = abs(time.time_ns() // 1000 - low) // 10
        low, high = max(MIN_INSTANT, low - margin), min(MAX_INSTANT, high + margin)
    return prefix, low, high


def _date_condition(low: Any, high: Any, value: str, parameter: str) -> ColumnElement[bool]:
    prefix, search_low, search_high = _date_range(value, parameter)
    return _compare_ranges(prefix, low, high, search_low, search_high)


def _number_condition(column: Any, value: str, parameter: str) -> ColumnElement[bool]:
    prefix, text = _prefix(value)
    found = number_range(text)
    if found is None:
        raise FhirError(400, f"{text!r} is not a number for {parameter!r}", code="invalid", expression=parameter)
    exact, low, high = found
    return {
        "eq": lambda: and_(column >= low, column < high),
        "ne": lambda: or_(column < low, column >= high),
        "gt": lambda: column > exact,
        "lt": lambda: column < exact,
        "ge": lambda: column >= exact,
        "le": lambda: column <= exact,
        "sa": lambda: column > exact,
        "eb": lambda: column < exact,
        "ap": lambda: and_(column >= exact - abs(exact) * 0.1, column <= exact + abs(exact) * 0.1),
    }[prefix]()


def _quantity_condition(value_column: Any, system: Any, code: Any, value: str, parameter: str) -> ColumnElement[bool]:
    number, _, rest = value.partition("|")
    unit_system, _, unit = rest.partition("|") if "|" in rest else ("", "", rest)
    conditions = [_number_condition(value_column, number, parameter)]
    if unit_system:
        conditions.append(system == unit_system)
    if unit:
        conditions.append(code == unit)
    return and_(*conditions)


def _token_match(system: Any, code: Any, value: str) -> ColumnElement[bool]:
    if "|" not in value:
        return code == value
    wanted_system, _, wanted_code = value.partition("|")
    conditions = [system.is_(None) if wanted_system == "" else system == wanted_system]
    if wanted_code:
        conditions.append(code == wanted_code)
    return and_(*conditions)


def _token_any(system: Any, code: Any, values: list[str]) -> ColumnElement[bool]:
    """Token values ORed, as IN lists grouped by system: ``system = ? AND code IN (...)``.

    An OR of many ``(system = ? AND code = ?)`` terms makes both planners give up the index and
    scan the parameter's rows; an IN list per system is answered from the (system, code) index.
    """
    codes_by_system: dict[str | None, list[str]] = {}
    others: list[ColumnElement[bool]] = []
    for value in values:
        wanted_system, bar, wanted_code = value.partition("|")
        if not bar:
            codes_by_system.setdefault(None, []).append(value)
        elif wanted_system and wanted_code:
            codes_by_system.setdefault(wanted_system, []).append(wanted_code)
        else:
            others.append(_token_match(system, code, value))
    for wanted_system, codes in codes_by_system.items():
        matched = code == codes[0] if len(codes) == 1 else code.in_(codes)
        others.append(matched if wanted_system is None else and_(system == wanted_system, matched))
    return others[0] if len(others) == 1 else or_(*others)


def _values_condition(table: Table, criterion: Criterion, values: list[str]) -> ColumnElement[bool]:
    """Any of ``values`` (a comma-separated OR)."""
    if criterion.parameter.type == "token" and criterion.modifier in (None, "not"):
        return _token_any(table.c.system, table.c.code, values)
    return or_(*(_value_condition(table, criterion, value) for value in values))


def _token_condition(table: Table, value: str, modifier: str | None, parameter: str) -> ColumnElement[bool]:
    if modifier == "text":
        return table.c.text.like(_escape_like(normalize_string(value)) + "%", escape="\\")
    if modifier == "of-type":
        parts = value.split("|")
        if len(parts) != 3:
            raise FhirError(400, f"{parameter}:of-type takes system|code|value", code="invalid", expression=parameter)
        type_system, type_code, identifier = parts
        return and_(table.c.type_system == type_system, table.c.type_code == type_code, table.c.code == identifier)
    return _token_match(table.c.system, table.c.code, value)


def _starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    """A prefix match as a range, which an index answers (a LIKE 'x%' filter may scan).

    Comparison is by code point: SQLite's BINARY collation, and "C" for the column on PostgreSQL.
    """
    return and_(column >= prefix, column < prefix + _LAST_CODE_POINT)


def _string_condition(table: Table, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value
    if modifier == "contains":
        return table.c.value.like(f"%{_escape_like(normalize_string(value))}%", escape="\\")
    return _starts_with(table.c.value, normalize_string(value))


def _reference_condition(table: Table, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "identifier":
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
    wanted_type = modifier if modifier and modifier[:1].isupper() else target_type
    condition = table.c.target_id == target_id
    return and_(condition, table.c.target_type == wanted_type) if wanted_type else condition


def _uri_condition(table: Table, value: str, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "below":
        return table.c.uri.like(_escape_like(value) + "%", escape="\\")
    if modifier == "above":
        return literal(value).like(table.c.uri + "%")
    return table.c.uri == value


def _composite_condition(table: Table, criterion: Criterion, value: str) -> ColumnElement[bool]:
    parameter = criterion.parameter
    first, separator, second = value.partition("$")
    if not separator:
        raise FhirError(
            400, f"{parameter.code} takes two values joined by $", code="invalid", expression=parameter.code
        )
    second_type = parameter.components[1][0]
    conditions = [_token_match(table.c.c1_system, table.c.c1_code, first)]
    if second_type == "token":
        conditions.append(_token_match(table.c.c2_system, table.c.c2_code, second))
    elif second_type == "string":
        conditions.append(table.c.c2_text.like(_escape_like(normalize_string(second)) + "%", escape="\\"))
    elif second_type == "reference":
        target_type, target_id = parse_reference(second) if "/" in second else (None, second)
        conditions.append(table.c.c2_text == target_id)
        if target_type:
            conditions.append(table.c.c2_code == target_type)
    elif second_type == "quantity":
        conditions.append(
            _quantity_condition(table.c.c2_low, table.c.c2_system, table.c.c2_code, second, parameter.code)
        )
    else:
        conditions.append(_date_condition(table.c.c2_low, table.c.c2_high, second, parameter.code))
    return and_(*conditions)


def _value_condition(table: Table, criterion: Criterion, value: str) -> ColumnElement[bool]:
    kind, name, modifier = criterion.parameter.type, criterion.parameter.code, criterion.modifier
    if kind == "token":
        return _token_condition(table, value, modifier, name)
    if kind == "string":
        return _string_condition(table, value, modifier)
    if kind == "date":
        return _date_condition(table.c.low, table.c.high, value, name)
    if kind == "number":
        return _number_condition(table.c.value, value, name)
    if kind == "quantity":
        return _quantity_condition(table.c.value, table.c.system, table.c.code, value, name)
    if kind == "reference":
        return _reference_condition(table, value, modifier)
    if kind == "composite":
        return _composite_condition(table, criterion, value)
    return _uri_condition(table, value, modifier)


# clauses ------------------------------------------------------------------------------------
def _row_condition(criterion: Criterion, versions: Table) -> ColumnElement[bool]:
    """``_id`` and ``_lastUpdated`` are columns of the version row."""
    if criterion.parameter.code == "_id":
        condition = versions.c.res_id.in_(criterion.values)
        return not_(condition) if criterion.modifier == "not" else condition
    column = versions.c.last_updated
    return or_(*(_date_condition(column, column, value, "_lastUpdated") for value in criterion.values))


def _criterion_condition(
    criterion: Criterion, versions: Table, resource_type: str | None, at_seq: int, driving: bool = True
) -> ColumnElement[bool]:
    """``driving``: the clause produces the candidate rows (an IN list from its index); otherwise it
    is an EXISTS checked on each candidate, which is what a broad clause (a date range) should be."""
    parameter, pk = criterion.parameter, versions.c.res_pk
    values = [v for v in criterion.values if v != ""]
    if not values:
        return true()  # an empty value is ignored, as the spec allows
    if parameter.code in ("_id", "_lastUpdated"):
        return _row_condition(criterion, versions)
    table = INDEX_TABLES[parameter.type]
    scope = [table.c.param == parameter.code, index_valid(table, at_seq)]
    if resource_type:
        scope.insert(0, table.c.res_type == resource_type)
    if criterion.modifier == "missing":
        has_any = pk.in_(select(table.c.res_pk).where(*scope))
        return not_(has_any) if values[-1].lower() == "true" else has_any
    matches = _values_condition(table, criterion, values)
    if criterion.modifier == "not":
        return pk.not_in(select(table.c.res_pk).where(*scope, matches))
    if not driving:  # checked per candidate through the res_pk index
        return exists().where(table.c.res_pk == pk, *scope, matches)
    return pk.in_(select(table.c.res_pk).where(*scope, matches))


def _resources_matching(resource_type: str, clause: Clause, at_seq: int) -> Select[Any]:
    """(type, id) of the resources of ``resource_type`` that match ``clause`` at ``at_seq``."""
    inner = VERSION.alias()
    return select(inner.c.res_type, inner.c.res_id).where(
        inner.c.res_type == resource_type,
        version_valid(at_seq, inner),
        inner.c.deleted.is_(False),
        clause_condition(clause, inner, resource_type, at_seq),
    )


def _chain_condition(chain: Chain, versions: Table, resource_type: str | None, at_seq: int) -> ColumnElement[bool]:
    reference = REFERENCE.alias()
    targets = or_(
        *(
            tuple_(reference.c.target_type, reference.c.target_id).in_(_resources_matching(target, clause, at_seq))
            for target, clause in chain.targets.items()
        )
    )
    scope = [reference.c.param == chain.reference.code, index_valid(reference, at_seq), targets]
    if resource_type:
        scope.insert(0, reference.c.res_type == resource_type)
    return versions.c.res_pk.in_(select(reference.c.res_pk).where(*scope))


def _reverse_chain_condition(has: ReverseChain, versions: Table, at_seq: int) -> ColumnElement[bool]:
    reference, source = REFERENCE.alias(), VERSION.alias()
    sources = select(source.c.res_pk).where(
        source.c.res_type == has.source_type,
        version_valid(at_seq, source),
        source.c.deleted.is_(False),
        clause_condition(has.inner, source, has.source_type, at_seq),
    )
    pointed_at = select(reference.c.target_type, reference.c.target_id).where(
        reference.c.res_type == has.source_type,
        reference.c.param == has.reference.code,
        index_valid(reference, at_seq),
        reference.c.res_pk.in_(sources),
    )
    return tuple_(versions.c.res_type, versions.c.res_id).in_(pointed_at)


def clause_condition(
    clause: Clause, versions: Table, resource_type: str | None, at_seq: int, driving: bool = True
) -> ColumnElement[bool]:
    """The condition that one search clause puts on the rows of ``versions`` (the version table or an alias)."""
    if isinstance(clause, Chain):
        return _chain_condition(clause, versions, resource_type, at_seq)
    if isinstance(clause, ReverseChain):
        return _reverse_chain_condition(clause, versions, at_seq)
    return _criterion_condition(clause, versions, resource_type, at_seq, driving)


# How many rows a clause of each kind is expected to match, lowest first: the first clause of a
# search drives it (its index gives the candidates), the others are checked per candidate.
_SELECTIVITY = {"reference": 0, "token": 2, "uri": 2, "composite": 2, "string": 3, "quantity": 4, "number": 4}
_LOWER_BOUNDS, _UPPER_BOUNDS = ("gt", "ge", "sa", "eq"), ("lt", "le", "eb", "eq")


@dataclass(frozen=True)
class _DateRange:
    """Date criteria ANDed on one single-valued parameter (``started=ge2024-01&started=lt2024-02``):
    with one value per resource they can be checked on the same index row, a bounded range."""

    criteria: tuple[Criterion, ...]

    @property
    def bounded(self) -> bool:
        prefixes = {_prefix(c.values[0])[0] for c in self.criteria}
        return bool(prefixes & set(_LOWER_BOUNDS)) and bool(prefixes & set(_UPPER_BOUNDS))


_YEAR_US = 366 * 24 * 3600 * 1_000_000


def _span(group: _DateRange) -> int:
    """How wide the searched interval is (microseconds), from its outermost bounds."""
    lows, highs = [], []
    for criterion in group.criteria:
        prefix, low, high = _date_range(criterion.values[0], criterion.parameter.code)
        if prefix in _LOWER_BOUNDS:
            lows.append(low)
        if prefix in _UPPER_BOUNDS:
            highs.append(high)
    return min(highs) - max(lows) if lows and highs else MAX_INSTANT - MIN_INSTANT


def _mergeable(clause: Clause) -> bool:
    return (
        isinstance(clause, Criterion)
        and clause.parameter.type == "date"
        and clause.modifier is None
        and len(clause.values) == 1
        and clause.values[0] != ""
        and _prefix(clause.values[0])[0] not in ("ne", "ap")
        and clause.parameter.single_valued
    )


def _merge_date_ranges(clauses: list[Clause]) -> list[Clause | _DateRange]:
    merged: list[Clause | _DateRange] = []
    ranges: dict[str, list[Criterion]] = {}
    for clause in clauses:
        if _mergeable(clause):
            ranges.setdefault(clause.parameter.code, []).append(clause)  # type: ignore[union-attr]
        else:
            merged.append(clause)
    merged += [group[0] if len(group) == 1 else _DateRange(tuple(group)) for group in ranges.values()]
    return merged


def _selectivity(clause: Clause | _DateRange) -> int:
    if isinstance(clause, _DateRange):
        # bounded and at most a year wide, the range (bounded on low too, see _low_bounds) is an index
        # range of a small share of the rows: a better driver than a code that many resources share
        return 1 if clause.bounded and _span(clause) <= _YEAR_US else 3 if clause.bounded else 5
    if isinstance(clause, Chain | ReverseChain):
        return 1
    if clause.modifier in ("not", "missing", "contains", "text") or clause.parameter.code == "_lastUpdated":
        return 9
    if clause.parameter.code == "_id":
        return -1
    if clause.parameter.type == "token" and clause.parameter.identifying:
        return 0
    if clause.parameter.type == "date":
        bounded = {_prefix(v)[0] for v in clause.values} <= {"eq"}
        return 3 if bounded else 5
    return _SELECTIVITY.get(clause.parameter.type, 6)


def _low_bounds(group: _DateRange, resource_type: str) -> list[ColumnElement[bool]]:
    """``low >= A - width`` for each lower bound on ``high``: turns "high >= A AND low <= B", which an
    index answers by scanning everything below B, into a range of ``low`` from A - width to B."""
    table = INDEX_TABLES["date"]
    parameter = group.criteria[0].parameter
    width = func.coalesce(
        select(DATE_WIDTH.c.width)
        .where(DATE_WIDTH.c.res_type == resource_type, DATE_WIDTH.c.param == parameter.code)
        .scalar_subquery(),
        0,
    )
    bounds = []
    for criterion in group.criteria:
        prefix, search_low, search_high = _date_range(criterion.values[0], parameter.code)
        if prefix in ("ge", "gt"):
            bounds.append(table.c.low >= (search_low if prefix == "ge" else search_high) - width)
    return bounds


def _range_condition(
    group: _DateRange, versions: Table, resource_type: str | None, at_seq: int, driving: bool
) -> ColumnElement[bool]:
    table = INDEX_TABLES["date"]
    parameter = group.criteria[0].parameter
    conditions = [table.c.param == parameter.code, index_valid(table, at_seq)]
    if resource_type:
        conditions.insert(0, table.c.res_type == resource_type)
    conditions += [_value_condition(table, c, c.values[0]) for c in group.criteria]
    if resource_type and group.bounded:
        conditions += _low_bounds(group, resource_type)
    if driving:
        return versions.c.res_pk.in_(select(table.c.res_pk).where(*conditions))
    return exists().where(table.c.res_pk == versions.c.res_pk, *conditions)


def _clause_conditions(query: SearchQuery, at_seq: int) -> list[ColumnElement[bool]]:
    ordered = sorted(_merge_date_ranges(query.clauses), key=_selectivity)
    conditions = []
    for index, clause in enumerate(ordered):
        if isinstance(clause, _DateRange):
            conditions.append(_range_condition(clause, VERSION, query.resource_type, at_seq, index == 0))
        else:
            conditions.append(clause_condition(clause, VERSION, query.resource_type, at_seq, driving=index == 0))
    return conditions


def _compartment_condition(query: SearchQuery, at_seq: int) -> ColumnElement[bool]:
    compartment = query.compartment
    assert compartment is not None
    links = patient_compartment()
    types = [query.resource_type] if query.resource_type else list(query.types or links)
    conditions = []
    for resource_type in types:
        parameters = [p for p in links.get(resource_type, []) if p != "{def}"]
        if not parameters:
            continue
        reference = REFERENCE.alias()
        linked = select(reference.c.res_pk).where(
            reference.c.res_type == resource_type,
            reference.c.param.in_(parameters),
            reference.c.target_type == compartment.owner_type,
            reference.c.target_id == compartment.owner_id,
            index_valid(reference, at_seq),
        )
        conditions.append(and_(VERSION.c.res_type == resource_type, VERSION.c.res_pk.in_(linked)))
    return or_(*conditions) if conditions else false()


# sorting and paging -------------------------------------------------------------------------
SORT_COLUMNS = {
    "string": "value",
    "token": "code",
    "number": "value",
    "quantity": "value",
    "reference": "target_id",
    "uri": "uri",
}


def sort_expression(key: SortKey, at_seq: int) -> Any:
    """The value a resource sorts by: the least (ascending) or greatest (descending) of its values."""
    if key.parameter is None:
        return VERSION.c.res_id if key.name == "_id" else VERSION.c.last_updated
    table = INDEX_TABLES[key.parameter.type].alias()
    if key.parameter.type == "date":
        column = table.c.high if key.descending else table.c.low
    else:
        column = table.c[SORT_COLUMNS[key.parameter.type]]
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate)
        .where(table.c.res_pk == VERSION.c.res_pk, table.c.param == key.parameter.code, index_valid(table, at_seq))
        .scalar_subquery()
    )


def _after(expressions: list[tuple[Any, bool]], values: list[Any], last_pk: int) -> ColumnElement[bool]:
    """Rows after the cursor in (sort keys..., pk) order; absent values sort last either way."""
    alternatives = []
    for index, (expression, descending) in enumerate(expressions):
        equal_before = [
            (expr.is_(None) if value is None else expr == value)
            for (expr, _), value in zip(expressions[:index], values[:index], strict=True)
        ]
        value = values[index]
        if value is None:
            continue  # nothing sorts after an absent value on this key but equal ones
        after = (expression < value) if descending else (expression > value)
        alternatives.append(and_(*equal_before, or_(after, expression.is_(None))))
    all_equal = [
        (expr.is_(None) if value is None else expr == value)
        for (expr, _), value in zip(expressions, values, strict=True)
    ]
    alternatives.append(and_(*all_equal, VERSION.c.res_pk > last_pk))
    return or_(*alternatives)


def compile_search(query: SearchQuery, *, counting: bool = False) -> Select[Any]:
    """One SELECT over the versions current at ``query.at_seq`` (or its COUNT)."""
    at_seq = query.at_seq
    assert at_seq is not None, "a search is answered as of a commit"
    conditions: list[ColumnElement[bool]] = [version_valid(at_seq), VERSION.c.deleted.is_(False)]
    if query.resource_type:
        conditions.append(VERSION.c.res_type == query.resource_type)
    elif query.types:
        conditions.append(VERSION.c.res_type.in_(query.types))
    if query.compartment:
        conditions.append(_compartment_condition(query, at_seq))
    conditions += _clause_conditions(query, at_seq)
    if counting:
        return select(func.count()).select_from(VERSION).where(*conditions)
    sort = [(sort_expression(key, at_seq), key.descending) for key in query.sort]
    if query.after:
        conditions.append(_after(sort, query.after.get("k", [None] * len(sort)), int(query.after["pk"])))
    order = [(expression.desc() if descending else expression.asc()).nulls_last() for expression, descending in sort]
    columns = [*VERSION_COLUMNS, *(expression.label(f"sort_{i}") for i, (expression, _) in enumerate(sort))]
    statement = select(*columns).where(*conditions).order_by(*order, VERSION.c.res_pk)
    return statement.limit(query.count + 1)  # one more tells whether a next page exists


# _include / _revinclude -----------------------------------------------------------------------
def include_statement(include: Include, sources: list[tuple[str, str, int]], at_seq: int, limit: int) -> Select[Any]:
    """Versions at ``at_seq`` that ``sources`` (type, id, pk) refer to, or that refer to them."""
    reference = REFERENCE.alias()
    scope = [index_valid(reference, at_seq)]
    if include.source_type != "*":
        scope.append(reference.c.res_type == include.source_type)
    if include.parameter:
        scope.append(reference.c.param == include.parameter)
    if include.target_type:
        scope.append(reference.c.target_type == include.target_type)
    if include.reverse:
        pointing = select(reference.c.res_pk).where(
            *scope, tuple_(reference.c.target_type, reference.c.target_id).in_([(t, i) for t, i, _ in sources])
        )
        matches = VERSION.c.res_pk.in_(pointing)
    else:
        pointed = select(reference.c.target_type, reference.c.target_id).where(
            *scope, reference.c.res_pk.in_([pk for _, _, pk in sources]), reference.c.target_id.is_not(None)
        )
        matches = tuple_(VERSION.c.res_type, VERSION.c.res_id).in_(pointed)
    return (
        select(*VERSION_COLUMNS)
        .where(version_valid(at_seq), VERSION.c.deleted.is_(False), matches)
        .order_by(VERSION.c.res_pk)
        .limit(limit)
    )
