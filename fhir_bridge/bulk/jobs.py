"""Export jobs and their files in the database: creation, leases, fenced writes, cancellation.

Every state change is one conditional UPDATE whose WHERE names the states it may come from
(``model.TRANSITIONS``), so concurrent API workers and export workers cannot break the state
machine. A worker's writes are fenced by its lease: each starts by renewing the lease with
``WHERE lease_owner = me AND status = 'in-progress'``; when that matches no row the job was
cancelled or taken over, and the worker drops it. Files are stored as chunks of whole NDJSON
lines, written in the same transaction as the job's cursor, so a resumed job continues exactly
after the last line that was committed.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from fhir_bridge.bulk.tables import BULK_CHUNK, BULK_FILE, BULK_JOB, BULK_JOB_CLIENT
from fhir_bridge.store.database import Engines, ensure_tables

from .model import PENDING, Cursor, ExportFile, ExportRequest, FileKind, Job, Status, sources_of


def now_micros() -> int:
    return time.time_ns() // 1000


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        status=Status(row.status),
        request_url=row.request,
        request=ExportRequest.from_json(row.parameters),
        at_seq=row.at_seq,
        transaction_time=row.transaction_time,
        created=row.created,
        finished=row.finished,
        lease_owner=row.lease_owner,
        lease_expires=row.lease_expires,
        cursor=Cursor.from_json(row.cursor),
        exported=row.exported,
        error=row.error,
    )


def _file(row: Any) -> ExportFile:
    return ExportFile(row.id, row.ordinal, FileKind(row.kind), row.res_type, row.count, row.size, row.chunks)


class LeaseLost(Exception):
    """The job was cancelled or taken over by another worker: stop working on it."""


@dataclass
class Chunk:
    """NDJSON text for one file, with the counts it adds."""

    text: str
    lines: int
    size: int  # bytes, UTF-8


class JobStore:
    """Reads and changes export jobs; the only module of ``bulk`` that writes to the database."""

    def __init__(self, engines: Engines) -> None:
        ensure_tables(engines, [BULK_JOB, BULK_JOB_CLIENT, BULK_FILE, BULK_CHUNK])
        self.engines = engines

    # reading ------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self.engines.reader.connect() as connection:
            row = connection.execute(select(BULK_JOB).where(BULK_JOB.c.id == job_id)).first()
        return _job(row) if row else None

    def client_of(self, job_id: str) -> str | None:
        """The job's owner (None: a job made before owners were recorded)."""
        with self.engines.reader.connect() as connection:
            return connection.execute(
                select(BULK_JOB_CLIENT.c.client_id).where(BULK_JOB_CLIENT.c.job_id == job_id)
            ).scalar_one_or_none()

    def files(self, job_id: str) -> list[ExportFile]:
        with self.engines.reader.connect() as connection:
            rows = connection.execute(
                select(BULK_FILE).where(BULK_FILE.c.job_id == job_id).order_by(BULK_FILE.c.ordinal)
            ).all()
        return [_file(row) for row in rows]

    def file(self, job_id: str, ordinal: int) -> ExportFile | None:
        with self.engines.reader.connect() as connection:
            row = connection.execute(
                select(BULK_FILE).where(BULK_FILE.c.job_id == job_id, BULK_FILE.c.ordinal == ordinal)
            ).first()
        return _file(row) if row else None

    def chunks(self, file_id: int) -> Iterator[str]:
        """The file's text, one chunk (one short query) at a time: memory holds one chunk."""
        position = 0
        while True:
            with self.engines.reader.connect() as connection:
                data = connection.execute(
                    select(BULK_CHUNK.c.data).where(BULK_CHUNK.c.file_id == file_id, BULK_CHUNK.c.position == position)
                ).scalar()
            if data is None:
                return
            yield data
            position += 1

    def pending(self) -> tuple[bool, int | None]:
        """Whether any job waits or runs, and the earliest time a running one's lease runs out."""
        with self.engines.reader.connect() as connection:
            rows = connection.execute(
                select(BULK_JOB.c.status, func.min(BULK_JOB.c.lease_expires))
                .where(BULK_JOB.c.status.in_(sorted(PENDING)))
                .group_by(BULK_JOB.c.status)
            ).all()
        found = dict(rows)
        return bool(found), found.get(Status.IN_PROGRESS.value)

    # creating and cancelling ----------------------------------------------------------------
    def create(
        self,
        job_id: str,
        request_url: str,
        request: ExportRequest,
        at_seq: int,
        transaction_time: int,
        errors: Chunk | None = None,
        owner: str | None = None,
    ) -> None:
        """A new ``accepted`` job; ``errors`` (a lenient kick-off's warnings) become its first error file;
        ``owner`` (the token's issuer and client, when access control is on) is who may see it afterwards."""
        with self.engines.writer.begin() as connection:
            connection.execute(
                insert(BULK_JOB).values(
                    id=job_id,
                    status=Status.ACCEPTED.value,
                    request=request_url,
                    parameters=request.to_json(),
                    at_seq=at_seq,
                    transaction_time=transaction_time,
                    created=now_micros(),
                    exported=0,
                )
            )
            if owner is not None:
                connection.execute(insert(BULK_JOB_CLIENT).values(job_id=job_id, client_id=owner))
            if errors is not None and errors.lines:
                file_id = self._new_file(connection, job_id, FileKind.ERROR, "OperationOutcome")
                self._append(connection, file_id, 0, errors)

    def cancel(self, job_id: str) -> bool:
        """Cancel the job and remove its files; False when there is no such (uncancelled) job."""
        with self.engines.writer.begin() as connection:
            changed = connection.execute(
                update(BULK_JOB)
                .where(BULK_JOB.c.id == job_id, BULK_JOB.c.status.in_(sources_of(Status.CANCELLED)))
                .values(status=Status.CANCELLED.value, finished=now_micros(), lease_owner=None, cursor=None)
            ).rowcount
            if changed:
                self._remove_files(connection, [job_id])
        return bool(changed)

    def sweep(self, retention_hours: float) -> int:
        """Remove jobs (and files) finished more than ``retention_hours`` ago; how many."""
        cutoff = now_micros() - int(retention_hours * 3600 * 1_000_000)
        with self.engines.writer.begin() as connection:
            old = list(
                connection.execute(
                    select(BULK_JOB.c.id).where(BULK_JOB.c.status.not_in(sorted(PENDING)), BULK_JOB.c.finished < cutoff)
                ).scalars()
            )
            if old:
                self._remove_files(connection, old)
                connection.execute(delete(BULK_JOB_CLIENT).where(BULK_JOB_CLIENT.c.job_id.in_(old)))
                connection.execute(delete(BULK_JOB).where(BULK_JOB.c.id.in_(old)))
        return len(old)

    def forget(self, resource_ids: Collection[str]) -> int:
        """Remove every job (and its files) whose output names one of ``resource_ids``, as a resource's
        id or a reference's; how many. For erasure: an export made before it must not keep a copy."""
        ids = sorted(resource_ids)
        if not ids:
            return 0
        with self.engines.writer.begin() as connection:
            found: set[str] = set()
            for start in range(0, len(ids), 100):
                mentions = [
                    condition
                    for res_id in ids[start : start + 100]
                    for condition in (
                        BULK_CHUNK.c.data.contains(f'"{res_id}"', autoescape=True),
                        BULK_CHUNK.c.data.contains(f'/{res_id}"', autoescape=True),
                    )
                ]
                statement = (
                    select(BULK_FILE.c.job_id)
                    .join(BULK_CHUNK, BULK_CHUNK.c.file_id == BULK_FILE.c.id)
                    .where(or_(*mentions))
                    .distinct()
                )
                found.update(connection.execute(statement).scalars())
            jobs = sorted(found)
            if jobs:
                self._remove_files(connection, jobs)
                connection.execute(delete(BULK_JOB_CLIENT).where(BULK_JOB_CLIENT.c.job_id.in_(jobs)))
                connection.execute(delete(BULK_JOB).where(BULK_JOB.c.id.in_(jobs)))
        return len(jobs)

    @staticmethod
    def _remove_files(connection: Connection, job_ids: list[str]) -> None:
        files = select(BULK_FILE.c.id).where(BULK_FILE.c.job_id.in_(job_ids))
        connection.execute(delete(BULK_CHUNK).where(BULK_CHUNK.c.file_id.in_(files)))
        connection.execute(delete(BULK_FILE).where(BULK_FILE.c.job_id.in_(job_ids)))

    # leases -----------------------------------------------------------------------------------
    def claim(self, owner: str, lease_seconds: float) -> Job | None:
        """Take the oldest job that waits, or whose worker's lease ran out; None when there is none."""
        now = now_micros()
        claimable = or_(
            BULK_JOB.c.status == Status.ACCEPTED.value,
            (BULK_JOB.c.status == Status.IN_PROGRESS.value) & (BULK_JOB.c.lease_expires < now),
        )
        with self.engines.reader.connect() as connection:
            candidates = list(
                connection.execute(
                    select(BULK_JOB.c.id).where(claimable).order_by(BULK_JOB.c.created).limit(5)
                ).scalars()
            )
        for job_id in candidates:
            with self.engines.writer.begin() as connection:
                taken = connection.execute(
                    update(BULK_JOB)
                    .where(BULK_JOB.c.id == job_id, claimable)
                    .values(
                        status=Status.IN_PROGRESS.value,
                        lease_owner=owner,
                        lease_expires=now + int(lease_seconds * 1_000_000),
                    )
                ).rowcount
            if taken:
                return self.get(job_id)
        return None

    def release(self, job_id: str, owner: str) -> None:
        """Give a job back (a worker shutting down): any worker may take it over at once."""
        with self.engines.writer.begin() as connection:
            connection.execute(
                update(BULK_JOB).where(BULK_JOB.c.id == job_id, BULK_JOB.c.lease_owner == owner).values(lease_expires=0)
            )

    @staticmethod
    def _fence(connection: Connection, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Renew the lease; False when the job is no longer this worker's (cancelled, taken over)."""
        return bool(
            connection.execute(
                update(BULK_JOB)
                .where(
                    BULK_JOB.c.id == job_id,
                    BULK_JOB.c.lease_owner == owner,
                    BULK_JOB.c.status == Status.IN_PROGRESS.value,
                )
                .values(lease_expires=now_micros() + int(lease_seconds * 1_000_000))
            ).rowcount
        )

    # a worker's writes ------------------------------------------------------------------------
    def write(
        self,
        job_id: str,
        owner: str,
        lease_seconds: float,
        *,
        cursor: Cursor,
        exported: int,
        new_file: tuple[FileKind, str] | None = None,
        chunk: Chunk | None = None,
    ) -> int | None:
        """Append ``chunk`` to the cursor's file (or to a new file) and move the cursor, atomically.

        Returns the id of the file now open (the cursor's own when no file was started); raises
        ``LeaseLost``, having written nothing, when the job is no longer this worker's.
        """
        with self.engines.writer.begin() as connection:
            if not self._fence(connection, job_id, owner, lease_seconds):
                raise LeaseLost(job_id)
            file_id = cursor.file_id
            if new_file is not None:
                file_id = self._new_file(connection, job_id, *new_file)
            if chunk is not None and chunk.lines:
                assert file_id is not None
                position = connection.execute(select(BULK_FILE.c.chunks).where(BULK_FILE.c.id == file_id)).scalar_one()
                self._append(connection, file_id, position, chunk)
            stored = Cursor(cursor.step, cursor.pk, file_id, cursor.in_file)
            connection.execute(
                update(BULK_JOB).where(BULK_JOB.c.id == job_id).values(cursor=stored.to_json(), exported=exported)
            )
        return file_id

    def finish(self, job_id: str, owner: str, status: Status, error: str | None = None) -> bool:
        """End a job this worker holds as ``completed`` or ``failed``."""
        with self.engines.writer.begin() as connection:
            return bool(
                connection.execute(
                    update(BULK_JOB)
                    .where(
                        BULK_JOB.c.id == job_id,
                        BULK_JOB.c.lease_owner == owner,
                        BULK_JOB.c.status.in_(sources_of(status)),
                    )
                    .values(status=status.value, finished=now_micros(), lease_owner=None, error=error)
                ).rowcount
            )

    @staticmethod
    def _new_file(connection: Connection, job_id: str, kind: FileKind, res_type: str) -> int:
        ordinal = connection.execute(
            select(func.coalesce(func.max(BULK_FILE.c.ordinal), 0)).where(BULK_FILE.c.job_id == job_id)
        ).scalar_one()
        return connection.execute(
            insert(BULK_FILE)
            .values(job_id=job_id, ordinal=ordinal + 1, kind=kind.value, res_type=res_type, count=0, size=0, chunks=0)
            .returning(BULK_FILE.c.id)
        ).scalar_one()

    @staticmethod
    def _append(connection: Connection, file_id: int, position: int, chunk: Chunk) -> None:
        connection.execute(insert(BULK_CHUNK).values(file_id=file_id, position=position, data=chunk.text))
        connection.execute(
            update(BULK_FILE)
            .where(BULK_FILE.c.id == file_id)
            .values(
                count=BULK_FILE.c.count + chunk.lines,
                size=BULK_FILE.c.size + chunk.size,
                chunks=BULK_FILE.c.chunks + 1,
            )
        )
