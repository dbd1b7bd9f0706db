"""The bulk export facade the API uses: kick-off, status, files, cancel, and the worker behind them."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Iterator

from fhir_bridge.errors import FhirError
from fhir_bridge.store.database import Engines

from .jobs import JobStore, now_micros
from .model import ExportFile, Job, Limits, Status
from .ndjson import chunk_of, outcome_line
from .parameters import read_export_request
from .selection import commit_clock, resource_pk
from .worker import ExportWorker

# The owner of jobs started while access control was off: no client owns them (nobody sees them with it on).
ANONYMOUS = "anonymous"


class BulkExports:
    """Export jobs of one store; ``threads`` = 0 makes a process that only answers (no worker)."""

    def __init__(self, engines: Engines, limits: Limits | None = None, threads: int = 1) -> None:
        self.engines = engines
        self.limits = limits or Limits()
        self.jobs = JobStore(engines)
        self.worker = ExportWorker(engines, self.jobs, self.limits, threads)

    def kick_off(
        self,
        level: str,
        parameters: Iterable[tuple[str, str]],
        *,
        lenient: bool,
        request_url: str,
        group_id: str | None = None,
        owner: str | None = None,
    ) -> Job:
        """Check the request, pin it to the newest commit and queue it; 400/404 when it cannot run.

        ``owner`` (access control on: the token's issuer and client, ``Principal.owner``) makes the job
        that client's: others get 404 for it. A job started without one (access control off) is marked
        ``ANONYMOUS`` and no client sees it once access control is on."""
        request = read_export_request(level, parameters, lenient=lenient, group_id=group_id)
        with self.engines.reader.connect() as connection:
            at_seq, last_updated = commit_clock(connection)
            if group_id is not None and resource_pk(connection, "Group", group_id, at_seq) is None:
                raise FhirError(404, f"Group/{group_id} is not known", code="not-found")
        # an empty store has no commit time: now is as good (every later write is later)
        transaction_time = last_updated if at_seq else now_micros()
        errors = chunk_of([outcome_line(w, "warning", "not-supported") for w in request.warnings])
        job_id = uuid.uuid4().hex
        self.jobs.create(job_id, request_url, request, at_seq, transaction_time, errors, owner or ANONYMOUS)
        if self.worker.enabled:
            self.worker.kick()
        job = self.jobs.get(job_id)
        assert job is not None
        return job

    def job(self, job_id: str, owner: str | None = None) -> Job:
        """A job that has not been cancelled (404 otherwise, as the IG wants after a DELETE).

        With ``owner`` (access control on), a job of another owner is 404 too: its existence is not
        revealed. So are jobs started while access control was off (``ANONYMOUS``, or no owner at all:
        made before owners were recorded), which anyone could have started."""
        job = self.jobs.get(job_id) if len(job_id) == 32 else None
        if job is not None and owner is not None and self.jobs.client_of(job_id) != owner:
            job = None
        if job is None or job.status is Status.CANCELLED:
            raise FhirError(404, f"there is no export {job_id!r} (unknown, deleted or expired)", code="not-found")
        return job

    def files(self, job_id: str) -> list[ExportFile]:
        return self.jobs.files(job_id)

    def cancel(self, job_id: str, owner: str | None = None) -> None:
        self.job(job_id, owner)
        if not self.jobs.cancel(job_id):
            raise FhirError(404, f"there is no export {job_id!r} (unknown, deleted or expired)", code="not-found")

    def forget(self, resource_ids: Collection[str]) -> int:
        """Delete the exports whose files hold any of ``resource_ids`` (erasure); how many."""
        return self.jobs.forget(resource_ids)

    def download(self, job_id: str, ordinal: int, owner: str | None = None) -> tuple[ExportFile, Iterator[str]]:
        """A file of a completed job and its text, chunk by chunk."""
        job = self.job(job_id, owner)
        found = self.jobs.file(job_id, ordinal) if job.status is Status.COMPLETED else None
        if found is None:
            raise FhirError(404, f"export {job_id} has no file {ordinal}", code="not-found")
        return found, self.jobs.chunks(found.id)
