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

from sqlalchemy import ColumnElement, Select, func, select

from fhir_bridge.search.compartments import in_compartment
from fhir_bridge.search.paging import page_statement
from fhir_bridge.search.planner import clause_conditions
from fhir_bridge.search.query import SearchQuery
from fhir_bridge.store.schema import VERSION, version_valid


def search_conditions(query: SearchQuery, at_seq: int) -> list[ColumnElement[bool]]:
    """What a version must meet to match ``query`` at ``at_seq``."""
    conditions: list[ColumnElement[bool]] = [version_valid(at_seq), VERSION.c.deleted.is_(False)]
    if query.resource_type:
        conditions.append(VERSION.c.res_type == query.resource_type)
    elif query.types:  # _type of a system or compartment search
        conditions.append(VERSION.c.res_type.in_(query.types))
    if query.compartment:
        conditions.append(in_compartment(query.compartment, query.resource_type, at_seq, query.types))
    return conditions + clause_conditions(query, at_seq)


def compile_search(query: SearchQuery, *, counting: bool = False) -> Select[Any]:
    """One SELECT over the versions current at ``query.at_seq`` (or its COUNT)."""
    at_seq = query.at_seq
    assert at_seq is not None, "a search is answered as of a commit"
    conditions = search_conditions(query, at_seq)
    if counting:
        return select(func.count()).select_from(VERSION).where(*conditions)
    return page_statement(query, conditions, at_seq)
