"""Which stored versions an export holds, read in batches of primary-key order at one commit.

An export is pinned to ``at_seq``: it holds each resource's version that was current then
(``version_valid``), so it is exactly the store at that commit however much is written while it
runs. Each batch is a fresh keyset query (``res_pk > last``, ordered by ``res_pk``), so no
transaction stays open between batches and memory holds one batch at a time.

Patient and Group exports keep what is in the Patient compartment of their patients: for each
type, the spec's compartment parameters (as ``Patient/[id]/*`` search uses them) must refer to
one of those Patients, as of ``at_seq``. A deleted resource belongs where its last version was:
its index rows are the ones its deletion closed (``seq_to`` = the deletion's ``seq``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, exists, select

from fhir_bridge.search.query import SearchQuery
from fhir_bridge.search.sql import compile_search, index_valid, version_valid
from fhir_bridge.spec.registry import patient_compartment
from fhir_bridge.store.tables import CLOCK, REFERENCE, VERSION

from .model import ExportRequest


@dataclass(frozen=True)
class Scope:
    """Whose data an export holds: everything (system), every patient's, or some patients'."""

    request: ExportRequest
    at_seq: int
    group_pk: int | None = None  # the Group whose Patient members a group export covers

    def owners(self) -> Select[Any] | list[str] | None:
        """The ids of the Patients whose compartments are exported (None: every Patient)."""
        if self.group_pk is not None:
            member = REFERENCE.alias()
            members = select(member.c.target_id).where(
                member.c.res_pk == self.group_pk,
                member.c.param == "member",
                member.c.target_type == "Patient",
                index_valid(member, self.at_seq),
            )
            if self.request.patients:
                members = members.where(member.c.target_id.in_(self.request.patients))
            return members
        return list(self.request.patients) if self.request.patients else None

    def compartment(self, resource_type: str, deleted: bool) -> ColumnElement[bool] | None:
        """The condition that a version of ``resource_type`` is in the exported compartments."""
        if self.request.level == "system":
            return None
        owners = self.owners()
        if resource_type == "Patient":
            return VERSION.c.res_id.in_(owners) if owners is not None else None
        parameters = [p for p in patient_compartment().get(resource_type, []) if p != "{def}"]
        reference = REFERENCE.alias()
        # a deleted resource's links are the index rows its deletion closed
        valid = reference.c.seq_to == VERSION.c.seq if deleted else index_valid(reference, self.at_seq)
        conditions = [
            reference.c.res_pk == VERSION.c.res_pk,
            reference.c.param.in_(parameters),
            reference.c.target_type == "Patient",
            valid,
        ]
        if owners is not None:
            conditions.append(reference.c.target_id.in_(owners))
        return exists(select(reference.c.id).where(*conditions))

    def conditions(self, resource_type: str, deleted: bool, after_pk: int) -> list[ColumnElement[bool]]:
        conditions = [
            VERSION.c.res_type == resource_type,
            version_valid(self.at_seq),
            VERSION.c.deleted.is_(deleted),
            VERSION.c.res_pk > after_pk,
        ]
        if self.request.since is not None:  # Bulk Data IG: resources updated *after* _since (exclusive), so a
            # previous export's transactionTime as _since does not export that commit's resources again
            conditions.append(VERSION.c.last_updated > self.request.since)
        compartment = self.compartment(resource_type, deleted)
        if compartment is not None:
            conditions.append(compartment)
        return conditions


def output_batch(
    connection: Connection,
    scope: Scope,
    resource_type: str,
    after_pk: int,
    limit: int,
    filters: list[SearchQuery],
) -> list[tuple[int, str]]:
    """(pk, stored JSON) of the next ``limit`` resources of ``resource_type`` after ``after_pk``.

    With ``_typeFilter`` queries, a resource is exported when any of them matches it (each query
    is compiled by the search compiler, pinned to the export's commit); their keyset batches are
    merged in pk order.
    """
    columns = (VERSION.c.res_pk, VERSION.c.content)
    conditions = scope.conditions(resource_type, False, after_pk)
    if not filters:
        statement = select(*columns).where(*conditions).order_by(VERSION.c.res_pk).limit(limit)
        return [(pk, content) for pk, content in connection.execute(statement)]
    merged: dict[int, str] = {}
    for query in filters:
        query.at_seq, query.after, query.count = scope.at_seq, {"pk": after_pk}, limit
        statement = compile_search(query).with_only_columns(*columns).where(*conditions).limit(limit)
        merged.update((pk, content) for pk, content in connection.execute(statement))
    return sorted(merged.items())[:limit]


def deleted_batch(
    connection: Connection, scope: Scope, resource_type: str, after_pk: int, limit: int
) -> list[tuple[int, str, int, int]]:
    """(pk, id, version, lastUpdated) of resources of ``resource_type`` deleted (as of the
    export's commit) after ``_since``, in the export's compartments."""
    statement = (
        select(VERSION.c.res_pk, VERSION.c.res_id, VERSION.c.version, VERSION.c.last_updated)
        .where(*scope.conditions(resource_type, True, after_pk))
        .order_by(VERSION.c.res_pk)
        .limit(limit)
    )
    return [tuple(row) for row in connection.execute(statement)]  # type: ignore[misc]


def commit_clock(connection: Connection) -> tuple[int, int]:
    """The newest committed ``seq`` and its ``lastUpdated`` (microseconds), read together."""
    row = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated).where(CLOCK.c.id == 1)).one()
    return row.seq, row.last_updated


def resource_pk(connection: Connection, resource_type: str, resource_id: str, at_seq: int) -> int | None:
    """The pk of a resource that exists (is not deleted) at ``at_seq``."""
    return connection.execute(
        select(VERSION.c.res_pk).where(
            VERSION.c.res_type == resource_type,
            VERSION.c.res_id == resource_id,
            version_valid(at_seq),
            VERSION.c.deleted.is_(False),
        )
    ).scalar()
