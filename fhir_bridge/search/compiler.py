"""Compile a ``SearchQuery`` into one SQL statement over the version and index tables.

A search is answered as of one commit (``at_seq``): a version or index row counts when it was
written at or before that seq and not replaced by then (``store.schema``'s validity rule). The
first page fixes ``at_seq``; the following pages keep it, so paging sees one consistent state
however many writes happen meanwhile. Each clause is compiled by its parameter type's module,
chains and ``_has`` by ``search.chains``, in the order ``search.planner`` chooses; repeated
parameters are ANDed, comma-separated values ORed. Sorting and paging: ``search.paging``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, distinct, func, select

from fhir_bridge.search.compartments import in_compartment
from fhir_bridge.search.criteria import Plan, criterion_plan
from fhir_bridge.search.paging import keyset_position, page_statement
from fhir_bridge.search.planner import clause_conditions, clause_order, index_driven
from fhir_bridge.search.query import Criterion, SearchQuery
from fhir_bridge.search.shapes import ShapeCache, parametrize, placeholders
from fhir_bridge.store.schema import VERSION, VERSION_COLUMNS, version_valid

# The statements of the searches compiled last, by shape (``search.shapes``).
SEARCH_SHAPES = ShapeCache(512)

Compiled = tuple[Select[Any], dict[str, Any]]  # a statement and the values of its placeholders


def search_conditions(
    query: SearchQuery, at_seq: int, plans: list[Plan | None] | None = None
) -> list[ColumnElement[bool]]:
    """What a version must meet to match ``query`` at ``at_seq`` (``plans``: see ``planner.clause_conditions``)."""
    conditions: list[ColumnElement[bool]] = [version_valid(at_seq), VERSION.c.deleted.is_(False)]
    if query.resource_type:
        conditions.append(VERSION.c.res_type == query.resource_type)
    elif query.types:  # _type of a system or compartment search
        conditions.append(VERSION.c.res_type.in_(query.types))
    if query.compartment:
        conditions.append(in_compartment(query.compartment, query.resource_type, at_seq, query.types))
    return conditions + clause_conditions(query, at_seq, plans or ())


def _statement(
    query: SearchQuery,
    counting: bool,
    at_seq: int,
    limit: int,
    after: tuple[tuple[Any, ...], int] | None,
    plans: list[Plan | None] | None,
    on_versions: bool = False,
) -> Select[Any]:
    driven = None if on_versions else index_driven(query, at_seq, plans or ())
    if driven is not None and (counting or not query.sort):
        return _index_statement(driven, query, counting, at_seq, limit, after)
    conditions = search_conditions(query, at_seq, plans)
    if counting:
        return select(func.count()).select_from(VERSION).where(*conditions)
    return page_statement(query, conditions, at_seq, after, limit)


def _index_statement(
    driven: tuple[FromClause, list[ColumnElement[bool]]],
    query: SearchQuery,
    counting: bool,
    at_seq: int,
    limit: int,
    after: tuple[tuple[Any, ...], int] | None,
) -> Select[Any]:
    """A search decided on the index tables alone (``planner.index_driven``): the matching pks are
    the driving rows' (each other clause checked on them), counted as they are, or cut to the page
    in pk order (the order of a search without ``_sort``) before any version row is read; then the
    versions of the page's pks only. The cost of a page follows the matches of the index tables'
    intersection, never one version probe per match."""
    table, conditions = driven
    pk = table.c.res_pk
    if counting:
        return select(func.count(distinct(pk))).where(*conditions)
    if after is not None:
        conditions = [*conditions, pk > after[1]]
    page = select(pk).where(*conditions).distinct().order_by(pk).limit(limit)
    return (
        select(*VERSION_COLUMNS)
        .where(
            VERSION.c.res_pk.in_(page),
            version_valid(at_seq),
            VERSION.c.deleted.is_(False),
            VERSION.c.res_type == query.resource_type,
        )
        .order_by(VERSION.c.res_pk)
        .limit(limit)
    )


def _shape(query: SearchQuery, counting: bool, on_versions: bool) -> tuple[Any, ...]:
    """What of ``query`` besides its plan the statement is built from (the planner's order of the
    clauses included: it depends on values, ``planner.clause_order``)."""
    clauses = tuple((c.parameter.code, c.modifier) for c in query.clauses if isinstance(c, Criterion))
    sort = tuple((key.name, key.descending) for key in query.sort)
    return query.resource_type, query.types, clauses, clause_order(query), sort, counting, on_versions


def compile_search(
    query: SearchQuery, *, counting: bool = False, limit: int | None = None, on_versions: bool = False
) -> Compiled:
    """One SELECT over the versions current at ``query.at_seq`` (or its COUNT), at most ``limit`` rows
    (a page and one more by default), and the values to run it with.

    A search decided on the index tables alone is driven by them (``_index_statement``); with
    ``on_versions`` it is not: the statement selects from the version table with every condition on
    its rows, for callers that add conditions or swap columns of their own (a page cut before their
    conditions would come up short).

    The searches whose every clause is planned (``criteria.criterion_plan``) share the statement of
    their shape (``SEARCH_SHAPES``): the search's values are bound when it runs. Chains, ``_has``,
    compartments and the types that build SQL from their values directly get a statement of their own.
    """
    at_seq = query.at_seq
    assert at_seq is not None, "a search is answered as of a commit"
    after = None if counting else keyset_position(query)
    rows = None if counting else query.count + 1 if limit is None else limit
    plans = [criterion_plan(c) if isinstance(c, Criterion) else None for c in query.clauses]
    if query.compartment is None and all(plan is not None for plan in plans):
        plan = (at_seq, rows, after, tuple(plans))
        try:
            shape, values = parametrize(plan)
        except TypeError:  # a cursor's sort value of another kind: not shared
            pass
        else:
            key = (_shape(query, counting, on_versions), shape)
            statement = SEARCH_SHAPES.get(key)
            if statement is None:
                seq, bound_rows, bound_after, bound_plans = placeholders(plan)
                statement = _statement(query, counting, seq, bound_rows, bound_after, list(bound_plans), on_versions)
                SEARCH_SHAPES.put(key, statement)
            return statement, values
    return _statement(query, counting, at_seq, rows or 0, after, plans, on_versions), {}
