"""What an export job is: its request, its states and the transitions between them.

A job is ``accepted`` at kick-off, ``in-progress`` while a worker holds its lease (a worker that
dies leaves it ``in-progress`` with a lease that runs out, and another worker takes it over),
and ends ``completed``, ``failed`` or ``cancelled``. Cancelling (DELETE on the status URL) is
possible from every state but ``cancelled``; it removes the job's files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson


class Status(StrEnum):
    ACCEPTED = "accepted"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# to-state -> the states a job may be in before it
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IN_PROGRESS: frozenset({Status.ACCEPTED, Status.IN_PROGRESS}),  # claim, or take over an expired lease
    Status.COMPLETED: frozenset({Status.IN_PROGRESS}),
    Status.FAILED: frozenset({Status.IN_PROGRESS}),
    Status.CANCELLED: frozenset({Status.ACCEPTED, Status.IN_PROGRESS, Status.COMPLETED, Status.FAILED}),
}
PENDING = frozenset({Status.ACCEPTED, Status.IN_PROGRESS})


def sources_of(target: Status) -> list[str]:
    """The states from which a job may move to ``target`` (used in the UPDATE's WHERE)."""
    return sorted(TRANSITIONS[target])


class FileKind(StrEnum):
    OUTPUT = "output"
    DELETED = "deleted"  # Bundles of DELETE entries (``_since`` exports)
    ERROR = "error"  # OperationOutcomes


@dataclass(frozen=True)
class ExportRequest:
    """A validated kick-off: what to export. Stored with the job as JSON."""

    level: str  # "system", "patient" or "group"
    types: tuple[str, ...]  # in export order
    since: int | None = None  # microseconds; None: no _since
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type -> search query strings (ORed)
    group_id: str | None = None
    patients: tuple[str, ...] = ()  # ``patient`` parameter: Patient ids the export is limited to
    output_format: str = "application/fhir+ndjson"
    warnings: tuple[str, ...] = ()  # parameters ignored under Prefer: handling=lenient

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> ExportRequest:
        data: dict[str, Any] = orjson.loads(text)
        for name in ("types", "patients", "warnings"):
            data[name] = tuple(data[name])
        return cls(**data)


@dataclass(frozen=True)
class Cursor:
    """Where a running job is: the step (a ``(kind, type)`` pair of the job's plan), the last pk
    written in it, and the file being filled (None between files) with its number of lines."""

    step: int = 0
    pk: int = 0
    file_id: int | None = None
    in_file: int = 0

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        return cls(**orjson.loads(text)) if text else cls()


@dataclass(frozen=True)
class Job:
    """A job row as read from the database."""

    id: str
    status: Status
    request_url: str
    request: ExportRequest
    at_seq: int
    transaction_time: int
    created: int
    finished: int | None
    lease_owner: str | None
    lease_expires: int | None
    cursor: Cursor
    exported: int
    error: str | None


@dataclass(frozen=True)
class ExportFile:
    """A file of a job, as listed in its manifest."""

    id: int
    ordinal: int
    kind: FileKind
    res_type: str
    count: int
    size: int
    chunks: int


@dataclass(frozen=True)
class Limits:
    """Sizes that keep memory flat and files manageable, and the timing of leases and polling."""

    batch_rows: int = 1000  # resources read from the store per query
    chunk_bytes: int = 1 << 20  # NDJSON text per stored chunk (whole lines; one line may exceed it)
    file_resources: int = 100_000  # resources per output file before a new one is started
    lease_seconds: float = 30.0  # a worker that stops renewing for this long loses its job
    poll_seconds: float = 1.0  # how often an idle worker looks for jobs while some are pending
    retention_hours: float = 24.0  # finished jobs (and their files) are removed after this
