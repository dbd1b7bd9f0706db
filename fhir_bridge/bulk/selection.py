"""Which stored versions an export holds, read in batches of primary-key order at one commit.

An export is pinned to ``at_seq``: it holds each resource's version that was current then, so it
is exactly the store at that commit however much is written while it runs. The batches are read
through the search package's pk-ordered scans (``search.batches``); this module says what an
export request asks of them.

Patient and Group exports keep what is in the Patient compartment of their patients: for each
type, the spec's compartment parameters (as ``Patient/[id]/*`` search uses them) must refer to
one of those Patients, as of ``at_seq``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from fhir_bridge.search.batches import BatchScope, deletion_batch, existing_pk, group_members, resource_batch
from fhir_bridge.search.compartments import Owners
from fhir_bridge.search.query import SearchQuery
from fhir_bridge.store.store import commit_clock

from .model import ExportRequest

__all__ = ["Scope", "commit_clock", "deleted_batch", "output_batch", "resource_pk"]


@dataclass(frozen=True)
class Scope:
    """Whose data an export holds: everything (system), every patient's, or some patients'."""

    request: ExportRequest
    at_seq: int
    group_pk: int | None = None  # the Group whose Patient members a group export covers

    def owners(self) -> Owners | None:
        """The ids of the Patients whose compartments are exported (None: every Patient)."""
        if self.group_pk is not None:
            return group_members(self.group_pk, self.at_seq, self.request.patients)
        return list(self.request.patients) if self.request.patients else None

    def batches(self) -> BatchScope:
        compartments = self.request.level != "system"
        owners = self.owners() if compartments else None
        return BatchScope(self.at_seq, self.request.since, compartments, owners)


def output_batch(
    connection: Connection,
    scope: Scope,
    resource_type: str,
    after_pk: int,
    limit: int,
    filters: list[SearchQuery],
) -> list[tuple[int, str]]:
    """(pk, stored JSON) of the next ``limit`` resources of ``resource_type`` after ``after_pk``;
    with ``_typeFilter`` queries, those that any of them matches."""
    return resource_batch(connection, scope.batches(), resource_type, after_pk, limit, filters)


def deleted_batch(
    connection: Connection, scope: Scope, resource_type: str, after_pk: int, limit: int
) -> list[tuple[int, str, int, int]]:
    """(pk, id, version, lastUpdated) of resources of ``resource_type`` deleted (as of the
    export's commit) after ``_since``, in the export's compartments."""
    return deletion_batch(connection, scope.batches(), resource_type, after_pk, limit)


def resource_pk(connection: Connection, resource_type: str, resource_id: str, at_seq: int) -> int | None:
    """The pk of a resource that exists (is not deleted) at ``at_seq``."""
    return existing_pk(connection, resource_type, resource_id, at_seq)
