"""Run one export job: its plan of steps, each streamed from the store in batches into NDJSON.

The plan is fixed by the request: one step per exported type for the resources, then (for
``_since`` exports) one per type for the deletions. The job's cursor names the step and the last
pk committed, so the same code starts a job and resumes one that another worker left.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from fhir_bridge.errors import FhirError
from fhir_bridge.store.database import Engines

from .jobs import JobStore, LeaseLost
from .model import ExportRequest, FileKind, Job, Limits, Status
from .ndjson import NdjsonWriter, deleted_line
from .parameters import filter_query
from .selection import Scope, deleted_batch, output_batch, resource_pk


class Outcome(StrEnum):
    COMPLETED = "completed"
    STOPPED = "stopped"  # asked to stop: the job stays where its cursor is, for a worker to resume
    LOST = "lost"  # cancelled, or taken over after this worker's lease ran out


def plan(request: ExportRequest) -> list[tuple[FileKind, str]]:
    steps = [(FileKind.OUTPUT, t) for t in request.types]
    if request.since is not None:
        steps += [(FileKind.DELETED, t) for t in request.types]
    return steps


def _scope(engines: Engines, job: Job) -> Scope:
    request = job.request
    if request.level != "group":
        return Scope(request, job.at_seq)
    with engines.reader.connect() as connection:
        group_pk = resource_pk(connection, "Group", request.group_id or "", job.at_seq)
    if group_pk is None:  # checked at kick-off, at the same commit: only a damaged store gets here
        raise FhirError(404, f"Group/{request.group_id} does not exist at the export's commit", code="not-found")
    return Scope(request, job.at_seq, group_pk)


def run_job(
    engines: Engines, jobs: JobStore, job: Job, owner: str, limits: Limits, should_stop: Callable[[], bool]
) -> Outcome:
    """Export ``job`` (claimed by ``owner``) from its cursor to the end, or until told to stop.

    Stopping leaves what was not yet committed to be done again by whoever resumes the job.
    """
    scope = _scope(engines, job)
    steps = plan(job.request)
    writer = NdjsonWriter(jobs, job, owner, limits)
    try:
        for index in range(job.cursor.step, len(steps)):
            kind, res_type = steps[index]
            writer.begin_step(index)
            after = writer.cursor.pk
            filters = [filter_query(res_type, q, strict=False) for q in job.request.type_filters.get(res_type, [])]
            while True:
                if should_stop():
                    return Outcome.STOPPED
                with engines.reader.connect() as connection:
                    if kind is FileKind.OUTPUT:
                        rows = output_batch(connection, scope, res_type, after, limits.batch_rows, filters)
                        for pk, content in rows:
                            writer.add(content, pk, kind, res_type)
                    else:
                        deleted = deleted_batch(connection, scope, res_type, after, limits.batch_rows)
                        for pk, res_id, version, last_updated in deleted:
                            writer.add(deleted_line(res_type, res_id, version, last_updated), pk, kind, res_type)
                        rows = deleted  # type: ignore[assignment]
                writer.heartbeat()
                if len(rows) < limits.batch_rows:
                    break
                after = rows[-1][0]
        writer.begin_step(len(steps))
        writer.flush()
    except LeaseLost:
        return Outcome.LOST
    if not jobs.finish(job.id, owner, Status.COMPLETED):
        return Outcome.LOST
    return Outcome.COMPLETED
