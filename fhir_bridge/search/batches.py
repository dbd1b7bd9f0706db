"""The versions current at one commit, read in batches of primary-key order (what bulk export reads).

Each batch is a fresh keyset query (``res_pk > last``, ordered by ``res_pk``), so no transaction
stays open between batches and memory holds one batch at a time; the statements are answered from
the covering (res_type, res_pk, ...) index of the version table. A batch may be narrowed to
Patients' compartments, to versions changed since an instant, and by search queries (``_typeFilter``:
a version is read when any of them matches it, each compiled by the search compiler at the batch's
commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, select

from fhir_bridge.search.compartments import Owners, in_patient_compartments
from fhir_bridge.search.compiler import compile_search
from fhir_bridge.search.query import SearchQuery
from fhir_bridge.store.schema import REFERENCE, VERSION, index_valid, version_valid


@dataclass(frozen=True)
class BatchScope:
    """Which versions a scan reads: those current at ``at_seq``, changed after ``since``, and with
    ``compartments`` only those in the compartment of one of ``owners`` (None: of any Patient)."""

    at_seq: int
    since: int | None = None
    compartments: bool = False
    owners: Owners | None = None

    def conditions(self, resource_type: str, deleted: bool, after_pk: int) -> list[ColumnElement[bool]]:
        conditions = [
            VERSION.c.res_type == resource_type,
            version_valid(self.at_seq),
            VERSION.c.deleted.is_(deleted),
            VERSION.c.res_pk > after_pk,
        ]
        if self.since is not None:  # Bulk Data IG: resources updated *after* _since (exclusive), so a
            # previous export's transactionTime as _since does not export that commit's resources again
            conditions.append(VERSION.c.last_updated > self.since)
        if self.compartments:
            compartment = in_patient_compartments(resource_type, self.owners, self.at_seq, deleted)
            if compartment is not None:
                conditions.append(compartment)
        return conditions


def resource_batch(
    connection: Connection,
    scope: BatchScope,
    resource_type: str,
    after_pk: int,
    limit: int,
    filters: Sequence[SearchQuery] = (),
) -> list[tuple[int, str]]:
    """(pk, stored JSON) of the next ``limit`` current resources of ``resource_type`` after ``after_pk``.

    With ``filters``, their keyset batches are merged in pk order."""
    columns = (VERSION.c.res_pk, VERSION.c.content)
    conditions = scope.conditions(resource_type, False, after_pk)
    if not filters:
        statement = select(*columns).where(*conditions).order_by(VERSION.c.res_pk).limit(limit)
        return [(pk, content) for pk, content in connection.execute(statement)]
    merged: dict[int, str] = {}
    for query in filters:
        query.at_seq, query.after, query.count = scope.at_seq, {"pk": after_pk}, limit
        statement, values = compile_search(query, limit=limit, on_versions=True)
        statement = statement.with_only_columns(*columns).where(*conditions)
        merged.update((pk, content) for pk, content in connection.execute(statement, values))
    return sorted(merged.items())[:limit]


def deletion_batch(
    connection: Connection, scope: BatchScope, resource_type: str, after_pk: int, limit: int
) -> list[tuple[int, str, int, int]]:
    """(pk, id, version, lastUpdated) of the next ``limit`` resources of ``resource_type`` deleted as of
    the scope's commit, after ``after_pk``."""
    statement = (
        select(VERSION.c.res_pk, VERSION.c.res_id, VERSION.c.version, VERSION.c.last_updated)
        .where(*scope.conditions(resource_type, True, after_pk))
        .order_by(VERSION.c.res_pk)
        .limit(limit)
    )
    return [(pk, res_id, version, last_updated) for pk, res_id, version, last_updated in connection.execute(statement)]


def group_members(group_pk: int, at_seq: int, only: Sequence[str] = ()) -> Select[Any]:
    """The ids of the Patients the Group ``group_pk`` has as members at ``at_seq`` (of ``only``, when given)."""
    member = REFERENCE.alias()
    members = select(member.c.target_id).where(
        member.c.res_pk == group_pk,
        member.c.param == "member",
        member.c.target_type == "Patient",
        index_valid(member, at_seq),
    )
    return members.where(member.c.target_id.in_(only)) if only else members


def existing_pk(connection: Connection, resource_type: str, resource_id: str, at_seq: int) -> int | None:
    """The pk of a resource that exists (is not deleted) at ``at_seq``."""
    pk: int | None = connection.execute(
        select(VERSION.c.res_pk).where(
            VERSION.c.res_type == resource_type,
            VERSION.c.res_id == resource_id,
            version_valid(at_seq),
            VERSION.c.deleted.is_(False),
        )
    ).scalar()
    return pk
