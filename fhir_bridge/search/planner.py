"""The order a search's clauses are applied in, and date ranges planned as one bounded index range.

The most selective clause drives a search: its index gives the candidate rows (an IN list), and
every other clause is checked per candidate (an EXISTS through the res_pk index). Selectivity is
estimated from the clause's kind alone (no statistics are read), lowest first.

Date criteria ANDed on one single-valued parameter (``started=ge2024-01&started=lt2024-02``) are
merged into one range checked on the same index row. Its lower bound on ``high`` becomes a bound on
``low`` too, through the widest value ever indexed for that parameter (``idx_date_width``): a value
that reaches up to A starts at A - width or later, so "started in March" is an index range on low
instead of a scan of everything before April.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from sqlalchemy import ColumnElement, FromClause, exists, func, select

from fhir_bridge.search.chains import clause_condition
from fhir_bridge.search.criteria import Plan, criterion_plan, criterion_rows, index_scope
from fhir_bridge.search.parameter_types.date import DateTerm, searched_range, term_condition
from fhir_bridge.search.query import Chain, Clause, Criterion, ReverseChain, SearchQuery
from fhir_bridge.search.values import MAX_INSTANT, MIN_INSTANT, Prefix, split_prefix
from fhir_bridge.store.schema import DATE, DATE_WIDTH, VERSION

# How many rows a clause of each kind is expected to match, lowest first.
_SELECTIVITY = {"reference": 0, "token": 2, "uri": 2, "composite": 2, "string": 3, "quantity": 4, "number": 4}
_LOWER_BOUNDS, _UPPER_BOUNDS = ("gt", "ge", "sa", "eq"), ("lt", "le", "eb", "eq")
_YEAR_US = 366 * 24 * 3600 * 1_000_000


@dataclass(frozen=True)
class DateRange:
    """Date criteria ANDed on one single-valued parameter: with one value per resource they can be
    checked on the same index row, a bounded range."""

    criteria: tuple[Criterion, ...]

    @property
    def bounded(self) -> bool:
        prefixes = {split_prefix(c.values[0])[0] for c in self.criteria}
        return bool(prefixes & set(_LOWER_BOUNDS)) and bool(prefixes & set(_UPPER_BOUNDS))

    @property
    def span(self) -> int:
        """How wide the searched interval is (microseconds), from its outermost bounds."""
        lows, highs = [], []
        for criterion in self.criteria:
            prefix, low, high = searched_range(criterion.values[0], criterion.parameter.code)
            if prefix in _LOWER_BOUNDS:
                lows.append(low)
            if prefix in _UPPER_BOUNDS:
                highs.append(high)
        return min(highs) - max(lows) if lows and highs else MAX_INSTANT - MIN_INSTANT


def _mergeable(clause: Clause) -> TypeGuard[Criterion]:
    return (
        isinstance(clause, Criterion)
        and clause.parameter.type == "date"
        and clause.modifier is None
        and len(clause.values) == 1
        and clause.values[0] != ""
        and split_prefix(clause.values[0])[0] not in ("ne", "ap")
        and clause.parameter.single_valued
    )


def merge_date_ranges(clauses: list[Clause]) -> list[Clause | DateRange]:
    """``clauses`` with the mergeable date criteria of each parameter grouped (at the end, in order)."""
    merged: list[Clause | DateRange] = []
    ranges: dict[str, list[Criterion]] = {}
    for clause in clauses:
        if _mergeable(clause):
            ranges.setdefault(clause.parameter.code, []).append(clause)
        else:
            merged.append(clause)
    merged += [group[0] if len(group) == 1 else DateRange(tuple(group)) for group in ranges.values()]
    return merged


def selectivity(clause: Clause | DateRange) -> int:
    """How many rows ``clause`` is expected to match, as a rank: the lowest drives the search."""
    if isinstance(clause, DateRange):
        # bounded and at most a year wide, the range (bounded on low too, see _low_bounds) is an index
        # range of a small share of the rows: a better driver than a code that many resources share
        return 1 if clause.bounded and clause.span <= _YEAR_US else 3 if clause.bounded else 5
    if isinstance(clause, Chain | ReverseChain):
        return 1
    if clause.modifier in ("not", "missing", "contains", "text") or clause.parameter.code == "_lastUpdated":
        return 9
    if clause.parameter.code == "_id":
        return -1
    if clause.parameter.type == "token" and clause.parameter.identifying:
        return 0
    if clause.parameter.type == "date":
        bounded = {split_prefix(v)[0] for v in clause.values} <= {"eq"}
        return 3 if bounded else 5
    return _SELECTIVITY.get(clause.parameter.type, 6)


PlanOf = Mapping[int, Plan | None]  # the plan of each clause (by ``id``), its values maybe placeholders


def _terms(group: DateRange, plan_of: PlanOf) -> list[DateTerm]:
    """The one term of each criterion of ``group`` (mergeable: one value each), from its plan."""
    terms = []
    for criterion in group.criteria:
        plan = plan_of.get(id(criterion)) or criterion_plan(criterion)
        assert plan is not None and len(plan) == 1 and isinstance(plan[0], DateTerm)
        terms.append(plan[0])
    return terms


def _low_bounds(group: DateRange, resource_type: str, table: FromClause, plan_of: PlanOf) -> list[ColumnElement[bool]]:
    """``low >= A - width`` for each lower bound on ``high``: turns "high >= A AND low <= B", which an
    index answers by scanning everything below B, into a range of ``low`` from A - width to B."""
    parameter = group.criteria[0].parameter
    width = func.coalesce(
        select(DATE_WIDTH.c.width)
        .where(DATE_WIDTH.c.res_type == resource_type, DATE_WIDTH.c.param == parameter.code)
        .scalar_subquery(),
        0,
    )
    bounds = []
    for term in _terms(group, plan_of):
        if term.prefix in (Prefix.GE, Prefix.GT):
            bounds.append(table.c.low >= (term.low if term.prefix is Prefix.GE else term.high) - width)
    return bounds


def _range_rows(
    group: DateRange, table: FromClause, resource_type: str | None, at_seq: int, plan_of: PlanOf
) -> list[ColumnElement[bool]]:
    """What a row of ``table`` (``idx_date`` or an alias) must meet to be in the range."""
    parameter = group.criteria[0].parameter.code
    conditions = index_scope(table, parameter, resource_type, at_seq)
    conditions += [term_condition(table.c.low, table.c.high, term) for term in _terms(group, plan_of)]
    if resource_type and group.bounded:
        conditions += _low_bounds(group, resource_type, table, plan_of)
    return conditions


def _range_condition(
    group: DateRange, versions: FromClause, resource_type: str | None, at_seq: int, driving: bool, plan_of: PlanOf
) -> ColumnElement[bool]:
    conditions = _range_rows(group, DATE, resource_type, at_seq, plan_of)
    if driving:
        return versions.c.res_pk.in_(select(DATE.c.res_pk).where(*conditions))
    return exists().where(DATE.c.res_pk == versions.c.res_pk, *conditions)


def clause_conditions(query: SearchQuery, at_seq: int, plans: Sequence[Plan | None] = ()) -> list[ColumnElement[bool]]:
    """The conditions of the query's clauses on the version table, the most selective first (driving).

    ``plans``: per clause of the query, its plan with placeholders (``search.shapes``) or None."""
    plan_of = {id(clause): plan for clause, plan in zip(query.clauses, plans, strict=False)}
    ordered = _ordered(query)
    conditions = []
    for index, clause in enumerate(ordered):
        if isinstance(clause, DateRange):
            conditions.append(_range_condition(clause, VERSION, query.resource_type, at_seq, index == 0, plan_of))
        else:
            plan = plan_of.get(id(clause))
            conditions.append(
                clause_condition(clause, VERSION, query.resource_type, at_seq, driving=index == 0, plan=plan)
            )
    return conditions


def _ordered(query: SearchQuery) -> list[Clause | DateRange]:
    return sorted(merge_date_ranges(query.clauses), key=selectivity)


def clause_order(query: SearchQuery) -> tuple[Any, ...]:
    """The order the planner applies the query's clauses in, as their positions in ``query.clauses``
    (a merged date range as the tuple of its criteria's positions).

    Part of a compiled search's shape (``compiler.compile_search``): the order is decided partly
    from values (a date range's span, whether a value is empty), so searches that share a statement
    must share their order too. Any two searches with the same plan shape and the same order build
    the same SQL."""
    position = {id(clause): index for index, clause in enumerate(query.clauses)}
    return tuple(
        tuple(position[id(c)] for c in clause.criteria) if isinstance(clause, DateRange) else position[id(clause)]
        for clause in _ordered(query)
    )


def index_driven(
    query: SearchQuery, at_seq: int, plans: Sequence[Plan | None] = ()
) -> tuple[FromClause, list[ColumnElement[bool]]] | None:
    """The matches of ``query`` as rows of its driving clause's index table, when every clause can be
    decided from the index tables alone: (an alias of the driving table, the conditions on its rows,
    the other clauses' included, each checked on the row's ``res_pk``). None otherwise.

    An index row valid at ``at_seq`` belongs to the version of its resource current then, which is
    not deleted (a delete or an update ends the rows of the version it replaces, an erasure removes
    them), so the rows' distinct ``res_pk`` are the matching resources: intersecting the clauses'
    pk sets needs no version row, and the page (``compiler``) reads the versions of its own rows only.
    Needs one resource type and clauses on ``res_pk`` alone: criteria on indexed parameters and
    chains (not ``_id``, ``_lastUpdated``, ``_has``), driven by a criterion that an index row stands
    for (``criteria.criterion_rows``) or a date range.
    """
    if not query.resource_type or query.compartment is not None or not query.clauses:
        return None
    plan_of = {id(clause): plan for clause, plan in zip(query.clauses, plans, strict=False)}
    ordered = _ordered(query)
    for clause in ordered:
        if isinstance(clause, ReverseChain) or (
            isinstance(clause, Criterion) and clause.parameter.code in ("_id", "_lastUpdated")
        ):
            return None
    first = ordered[0]
    if isinstance(first, DateRange):
        table: FromClause = DATE.alias("driving_date")
        conditions = _range_rows(first, table, query.resource_type, at_seq, plan_of)
    elif isinstance(first, Criterion):
        rows = criterion_rows(first, query.resource_type, at_seq, plan_of.get(id(first)))
        if rows is None:
            return None
        table, conditions = rows
    else:
        return None
    # The other clauses as pk sets (``res_pk IN (SELECT ...)``), not correlated probes: PostgreSQL plans
    # either as a semi-join, while SQLite probed each candidate through the value index (every row of
    # the code, per candidate) and now builds each set once.
    for clause in ordered[1:]:
        if isinstance(clause, DateRange):
            conditions.append(_range_condition(clause, table, query.resource_type, at_seq, True, plan_of))
        else:
            conditions.append(
                clause_condition(clause, table, query.resource_type, at_seq, driving=True, plan=plan_of.get(id(clause)))
            )
    return table, conditions
