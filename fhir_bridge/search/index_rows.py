"""The search index as row sets valid at one commit, for packages that count and group over it.

The catalogue's statistics are GROUP BY / COUNT(DISTINCT) queries over index rows (modalities,
genders, condition codes, study subjects...). Rather than read the store's tables and repeat the
validity rule and the token matcher, it asks for ``Rows``: a FROM item with the conditions that
make it "the rows of this parameter of this type, valid at this seq", and composes joins and
aggregates over them. The columns are those of the parameter type's index table: ``res_pk`` and
``token``: system, code, text; ``reference``: target_type, target_id, url; ``string``: value
(normalised), exact; ``date``: low, high (microseconds). Counts over all ImagingStudies read
their facts (``study_fact_rows``), a narrow copy of their current index rows with each study's subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause

from fhir_bridge.search.parameter_types.token import token_any
from fhir_bridge.store.schema import INDEX_TABLES, RESOURCE, STUDY_FACTS, VERSION, index_valid, version_valid


@dataclass(frozen=True)
class Rows:
    """A FROM item (``table``, an alias unless unnamed) and the conditions that scope its rows."""

    table: FromClause
    scope: tuple[ColumnElement[bool], ...]

    @property
    def c(self) -> Any:
        return self.table.c


def _named(table: FromClause, name: str | None) -> FromClause:
    return table.alias(name) if name else table


def index_rows(kind: str, resource_type: str, parameter: str, at_seq: int, name: str | None, **equal: Any) -> Rows:
    """The ``kind`` index rows of ``parameter`` of ``resource_type`` valid at ``at_seq``, with the
    columns named in ``equal`` (e.g. ``target_type="Patient"``) equal to their values."""
    table = _named(INDEX_TABLES[kind], name)
    scope = [table.c.res_type == resource_type, table.c.param == parameter]
    scope += [table.c[column] == value for column, value in equal.items()]
    return Rows(table, (*scope, index_valid(table, at_seq)))


def token_rows(
    resource_type: str, parameter: str, at_seq: int, name: str | None, values: Sequence[str] = (), coded: bool = False
) -> Rows:
    """Token rows of ``parameter`` valid at ``at_seq``: those holding a code (``coded``), those
    matching one of ``values`` (FHIR token syntax, the search's matcher)."""
    table = _named(INDEX_TABLES["token"], name)
    scope = [table.c.res_type == resource_type, table.c.param == parameter]
    if coded:
        scope.append(table.c.code.is_not(None))
    if values:
        scope.append(token_any(table.c.system, table.c.code, values))
    return Rows(table, (*scope, index_valid(table, at_seq)))


def resource_rows(resource_type: str, name: str | None) -> Rows:
    """One row per resource of ``resource_type`` ever written: ``pk`` (what index rows' ``res_pk``
    holds) by ``res_id``, to follow a reference's target id to the target's index rows."""
    table = _named(RESOURCE, name)
    return Rows(table, (table.c.res_type == resource_type,))


def current_versions(resource_type: str, at_seq: int) -> Rows:
    """The versions of ``resource_type`` current and not deleted at ``at_seq`` (``res_pk``, ``res_id``...)."""
    return Rows(VERSION, (VERSION.c.res_type == resource_type, VERSION.c.deleted.is_(False), version_valid(at_seq)))


def study_fact_rows(parameter: str, name: str | None) -> Rows:
    """The current ImagingStudies' facts of one kind (``store.schema.STUDY_FACTS``): ``subject`` (one
    row per study: ``subject``, ``started``), a token parameter (``system``, ``code``), ``performer``
    (``code``: the Device id) or ``segment``; every row has ``res_pk`` and ``subject``. Current at the
    newest commit only: read them with the clock, in one snapshot."""
    table = _named(STUDY_FACTS, name)
    return Rows(table, (table.c.param == parameter,))
