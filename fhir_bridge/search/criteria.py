"""One search criterion (``code[:modifier]=v1,v2``) as a condition on the version rows.

A criterion on an indexed parameter becomes ``res_pk IN (SELECT res_pk FROM idx_<type> WHERE ...)``
where its type module (``search.parameter_types``) says what an index row must hold; ``:missing``
and ``:not`` are about the whole set of a resource's rows, so they are decided here. ``_id`` and
``_lastUpdated`` are columns of the version row itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, exists, not_, or_, select, true

from fhir_bridge.search.parameter_types import PARAMETER_TYPES, PLANNED_TYPES
from fhir_bridge.search.parameter_types.date import DateTerm, term_condition
from fhir_bridge.search.parameter_types.date import terms as date_terms
from fhir_bridge.search.query import Criterion
from fhir_bridge.store.schema import INDEX_TABLES, index_valid

ROW_PARAMETERS = ("_id", "_lastUpdated")


def index_scope(table: FromClause, parameter: str, resource_type: str | None, at_seq: int) -> list[ColumnElement[bool]]:
    """The rows of one parameter (of one type, when given) valid at ``at_seq``, in the order of the
    value index's leading columns (type, parameter)."""
    scope = [table.c.param == parameter, index_valid(table, at_seq)]
    if resource_type:
        scope.insert(0, table.c.res_type == resource_type)
    return scope


@dataclass(frozen=True)
class Ids:
    """The plan of ``_id`` (``search.shapes``): the ids ORed."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Missing:
    """The plan of ``:missing``: whether the resources without a value are wanted."""

    missing: bool


Plan = tuple[Any, ...]


def criterion_plan(criterion: Criterion) -> Plan | None:
    """The plan of the criterion's values (``search.shapes``): () when it is ignored (no value); None
    when its SQL is built from the values directly (its searches are not shared)."""
    parameter = criterion.parameter
    values = [v for v in criterion.values if v != ""]
    if not values:
        return ()
    if parameter.code == "_id":
        return (Ids(criterion.values),)
    if parameter.code == "_lastUpdated":
        return date_terms(criterion, criterion.values)  # every value, as before (an empty one is an error)
    if criterion.modifier == "missing":
        return (Missing(values[-1].lower() == "true"),)
    planned = PLANNED_TYPES.get(parameter.type)
    return planned.terms(criterion, values) if planned else None


def _last_updated(versions: FromClause, terms: Plan) -> ColumnElement[bool]:
    """``_lastUpdated`` is a column of the version row."""
    column = versions.c.last_updated
    return or_(*(term_condition(column, column, term) for term in terms if isinstance(term, DateTerm)))


def criterion_condition(
    criterion: Criterion,
    versions: FromClause,
    resource_type: str | None,
    at_seq: int,
    driving: bool = True,
    plan: Plan | None = None,
) -> ColumnElement[bool]:
    """``driving``: the clause produces the candidate rows (an IN list from its index); otherwise it
    is an EXISTS checked on each candidate, which is what a broad clause (a date range) should be.

    ``plan``: the criterion's plan with its values as placeholders (``search.shapes``); by default
    its own plan, with its values."""
    parameter, pk = criterion.parameter, versions.c.res_pk
    if plan is None:
        plan = criterion_plan(criterion)
    if plan == ():
        return true()  # an empty value is ignored, as the spec allows
    if parameter.code == "_id":
        assert plan is not None and isinstance(plan[0], Ids)
        condition = versions.c.res_id.in_(plan[0].ids)
        return not_(condition) if criterion.modifier == "not" else condition
    if parameter.code in ROW_PARAMETERS:
        assert plan is not None
        return _last_updated(versions, plan)
    table = INDEX_TABLES[parameter.type]
    if criterion.modifier == "missing":
        assert plan is not None and isinstance(plan[0], Missing)
        has_any = pk.in_(select(table.c.res_pk).where(*index_scope(table, parameter.code, resource_type, at_seq)))
        return not_(has_any) if plan[0].missing else has_any
    conditions = _matching_rows(criterion, table, resource_type, at_seq, plan)
    if criterion.modifier == "not":
        return pk.not_in(select(table.c.res_pk).where(*conditions))
    if not driving:  # checked per candidate through the res_pk index
        return exists().where(table.c.res_pk == pk, *conditions)
    return pk.in_(select(table.c.res_pk).where(*conditions))


def _matching_rows(
    criterion: Criterion, table: FromClause, resource_type: str | None, at_seq: int, plan: Plan | None
) -> list[ColumnElement[bool]]:
    """What an index row of ``table`` (the parameter type's table or an alias) must meet to match
    ``criterion`` (without ``:not``/``:missing``, which are about the whole set of a resource's rows)."""
    parameter = criterion.parameter
    scope = index_scope(table, parameter.code, resource_type, at_seq)
    if plan is None:
        matches = PARAMETER_TYPES[parameter.type].matches(table, criterion, [v for v in criterion.values if v != ""])
    else:
        matches = PLANNED_TYPES[parameter.type].terms_matches(table, plan)
    return [*scope, matches]


def criterion_rows(
    criterion: Criterion, resource_type: str | None, at_seq: int, plan: Plan | None = None
) -> tuple[FromClause, list[ColumnElement[bool]]] | None:
    """The index rows whose resources match ``criterion`` (an alias of its type's table, and the
    conditions on it), when a match is one of them: None for ``_id``, ``_lastUpdated``, ``:not``,
    ``:missing`` and a criterion without a value, which no index row stands for."""
    if plan is None:
        plan = criterion_plan(criterion)
    parameter = criterion.parameter
    if plan == () or parameter.code in ROW_PARAMETERS or criterion.modifier in ("not", "missing"):
        return None
    table = INDEX_TABLES[parameter.type].alias(f"driving_{parameter.type}")
    return table, _matching_rows(criterion, table, resource_type, at_seq, plan)
