"""One search criterion (``code[:modifier]=v1,v2``) as a condition on the version rows.

A criterion on an indexed parameter becomes ``res_pk IN (SELECT res_pk FROM idx_<type> WHERE ...)``
where its type module (``search.parameter_types``) says what an index row must hold; ``:missing``
and ``:not`` are about the whole set of a resource's rows, so they are decided here. ``_id`` and
``_lastUpdated`` are columns of the version row itself.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, exists, not_, or_, select, true

from fhir_bridge.search.parameter_types import PARAMETER_TYPES
from fhir_bridge.search.parameter_types.date import date_condition
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


def _row_condition(criterion: Criterion, versions: FromClause) -> ColumnElement[bool]:
    """``_id`` and ``_lastUpdated`` are columns of the version row."""
    if criterion.parameter.code == "_id":
        condition = versions.c.res_id.in_(criterion.values)
        return not_(condition) if criterion.modifier == "not" else condition
    column = versions.c.last_updated
    return or_(*(date_condition(column, column, value, "_lastUpdated") for value in criterion.values))


def criterion_condition(
    criterion: Criterion, versions: FromClause, resource_type: str | None, at_seq: int, driving: bool = True
) -> ColumnElement[bool]:
    """``driving``: the clause produces the candidate rows (an IN list from its index); otherwise it
    is an EXISTS checked on each candidate, which is what a broad clause (a date range) should be."""
    parameter, pk = criterion.parameter, versions.c.res_pk
    values = [v for v in criterion.values if v != ""]
    if not values:
        return true()  # an empty value is ignored, as the spec allows
    if parameter.code in ROW_PARAMETERS:
        return _row_condition(criterion, versions)
    table = INDEX_TABLES[parameter.type]
    scope = index_scope(table, parameter.code, resource_type, at_seq)
    if criterion.modifier == "missing":
        has_any = pk.in_(select(table.c.res_pk).where(*scope))
        return not_(has_any) if values[-1].lower() == "true" else has_any
    matches = PARAMETER_TYPES[parameter.type].matches(table, criterion, values)
    if criterion.modifier == "not":
        return pk.not_in(select(table.c.res_pk).where(*scope, matches))
    if not driving:  # checked per candidate through the res_pk index
        return exists().where(table.c.res_pk == pk, *scope, matches)
    return pk.in_(select(table.c.res_pk).where(*scope, matches))
