"""Chained (``subject:Patient.name=x``) and reverse-chained (``_has:Observation:subject:code=y``) clauses.

A chain keeps the resources whose reference points at a match of the rest of the chain on the
target type; ``_has`` keeps the resources that a matching source resource points at. Both recurse
into ``clause_condition``, which is also the entry point for any clause of a search.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, or_, select, tuple_

from fhir_bridge.search.criteria import Plan, criterion_condition, index_scope
from fhir_bridge.search.query import Chain, Clause, ReverseChain
from fhir_bridge.store.schema import REFERENCE, VERSION, index_valid, version_valid


def clause_condition(
    clause: Clause,
    versions: FromClause,
    resource_type: str | None,
    at_seq: int,
    driving: bool = True,
    plan: Plan | None = None,
) -> ColumnElement[bool]:
    """The condition that one search clause puts on the rows of ``versions`` (the version table or an alias);
    ``plan``: a criterion's plan with placeholders (``criteria.criterion_condition``)."""
    if isinstance(clause, Chain):
        return _chain_condition(clause, versions, resource_type, at_seq)
    if isinstance(clause, ReverseChain):
        return _reverse_chain_condition(clause, versions, at_seq)
    return criterion_condition(clause, versions, resource_type, at_seq, driving, plan)


def _current(versions: FromClause, resource_type: str, at_seq: int) -> list[ColumnElement[bool]]:
    """Versions of ``resource_type`` current (and not deleted) at ``at_seq``."""
    return [versions.c.res_type == resource_type, version_valid(at_seq, versions), versions.c.deleted.is_(False)]


def _resources_matching(resource_type: str, clause: Clause, at_seq: int) -> Select[Any]:
    """(type, id) of the resources of ``resource_type`` that match ``clause`` at ``at_seq``."""
    inner = VERSION.alias()
    return select(inner.c.res_type, inner.c.res_id).where(
        *_current(inner, resource_type, at_seq), clause_condition(clause, inner, resource_type, at_seq)
    )


def _chain_condition(chain: Chain, versions: FromClause, resource_type: str | None, at_seq: int) -> ColumnElement[bool]:
    reference = REFERENCE.alias()
    targets = or_(
        *(
            tuple_(reference.c.target_type, reference.c.target_id).in_(_resources_matching(target, clause, at_seq))
            for target, clause in chain.targets.items()
        )
    )
    scope = index_scope(reference, chain.reference.code, resource_type, at_seq)
    return versions.c.res_pk.in_(select(reference.c.res_pk).where(*scope, targets))


def _reverse_chain_condition(has: ReverseChain, versions: FromClause, at_seq: int) -> ColumnElement[bool]:
    reference, source = REFERENCE.alias(), VERSION.alias()
    sources = select(source.c.res_pk).where(
        *_current(source, has.source_type, at_seq), clause_condition(has.inner, source, has.source_type, at_seq)
    )
    pointed_at = select(reference.c.target_type, reference.c.target_id).where(
        reference.c.res_type == has.source_type,
        reference.c.param == has.reference.code,
        index_valid(reference, at_seq),
        reference.c.res_pk.in_(sources),
    )
    return tuple_(versions.c.res_type, versions.c.res_id).in_(pointed_at)
