"""Run searches: compiled here, executed through the store's read and write-session APIs.

The store knows no search; the search package knows no connection handling. These functions are
what the interactions (search sets, conditional writes), ``fhir-bridge explain`` and the
benchmarks call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, distinct, func, select

from fhir_bridge.search.compiler import compile_search
from fhir_bridge.search.includes import include_statement
from fhir_bridge.search.query import Include, SearchQuery
from fhir_bridge.search.shapes import with_values
from fhir_bridge.store.schema import REFERENCE, VERSION, VERSION_COLUMNS, index_valid
from fhir_bridge.store.store import Store, StoredVersion, WriteSession

_WIDTH = len(VERSION_COLUMNS)


def search_page(store: Store, query: SearchQuery) -> list[tuple[StoredVersion, list[Any]]]:
    """One page (plus one row) of matches at ``query.at_seq``, each with its sort values; without
    ``at_seq``, at the newest commit (``query.at_seq`` is then set to it)."""
    if query.at_seq is None:

        def at(seq: int) -> tuple[Select[Any], dict[str, Any]]:
            query.at_seq = seq
            return compile_search(query)

        _, rows = store.rows_at_newest(at)
    else:
        rows = store.rows(*compile_search(query))
    return [(StoredVersion.of_row(row), list(row[_WIDTH:])) for row in rows]


def _whole_type(query: SearchQuery) -> str | None:
    """The type ``query`` counts every current resource of (no criterion, no compartment), if it does."""
    if query.resource_type and not query.clauses and not query.compartment and not query.types:
        return query.resource_type
    return None


def count_matches(store: Store, query: SearchQuery) -> int:
    """How many resources match ``query`` at ``query.at_seq``; without ``at_seq``, at the newest
    commit (``query.at_seq`` is then set to it).

    A whole type at the newest commit is the count the write path keeps (read with the commit clock,
    one snapshot); otherwise, or pinned to an older commit, the matches are counted, exactly unless
    the search asked for ``_total=estimate`` (then, on PostgreSQL, the planner's estimate).
    """
    whole = _whole_type(query)
    if whole is not None:
        kept = store.count_current(whole, query.at_seq)
        if kept is not None:
            query.at_seq, count = kept
            return count
    if query.at_seq is None:
        query.at_seq = store.last_seq()
    if query.total == "estimate":  # search.html#total: an estimate is acceptable
        statement, values = compile_search(query, counting=True, on_versions=True)
        estimate = store.estimate_rows(statement.with_only_columns(VERSION.c.res_pk), values)
        if estimate is not None:
            return estimate
    counted: int = store.scalar(*compile_search(query, counting=True))
    return counted


def explain_plan(store: Store, query: SearchQuery) -> tuple[str, list[str]]:
    """The SQL of ``query``'s first page and the database's plan for it."""
    statement, values = compile_search(query)
    return store.explain(with_values(statement, values) if values else statement)


def included(
    store: Store, include: Include, sources: list[StoredVersion], at_seq: int, limit: int
) -> list[StoredVersion]:
    """What one ``_include``/``_revinclude`` adds for ``sources`` (at most ``limit``)."""
    keys = [(s.res_type, s.res_id, s.pk) for s in sources]
    if not keys:
        return []
    return [StoredVersion.of_row(row) for row in store.rows(include_statement(include, keys, at_seq, limit))]


def find_in_session(session: WriteSession, query: SearchQuery, limit: int = 2) -> list[StoredVersion]:
    """Current resources matching ``query`` as the write transaction ``session`` sees them
    (its own writes included), for conditional writes; at most ``limit``."""
    query.at_seq = session.last_seq
    return [StoredVersion.of_row(row) for row in session.rows(*compile_search(query, limit=limit))]


def count_distinct_targets(store: Store, query: SearchQuery, parameter: str, target_type: str) -> int:
    """How many distinct ``target_type`` resources the matches of ``query`` point at by ``parameter``.

    E.g. the distinct subject Patients of the ImagingStudies matching a search: a FHIR search counts
    the studies, not the patients they are about (``Patient?_has:...`` would accept a patient whose
    two criteria are met by different studies). Federated search publishes counts resting on it.
    """
    assert query.resource_type is not None and query.at_seq is not None
    counting, values = compile_search(query, counting=True, on_versions=True)
    matching = counting.with_only_columns(VERSION.c.res_pk)
    target = REFERENCE.alias("target")
    statement = select(func.count(distinct(target.c.target_id))).where(
        target.c.res_pk.in_(matching),
        target.c.res_type == query.resource_type,
        target.c.param == parameter,
        target.c.target_type == target_type,
        index_valid(target, query.at_seq),
    )
    count: int = store.scalar(statement, values)
    return count
