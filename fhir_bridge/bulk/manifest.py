"""What a client sees of a job: the completion manifest and the progress line of a running job."""

from __future__ import annotations

from typing import Any

from fhir_bridge.store.versions import format_instant

from .model import ExportFile, FileKind, Job, Status
from .runner import plan


def file_url(base: str, job_id: str, ordinal: int) -> str:
    return f"{base}/$export-file/{job_id}/{ordinal}.ndjson"


def status_url(base: str, job_id: str) -> str:
    return f"{base}/$export-status/{job_id}"


def manifest(job: Job, files: list[ExportFile], base: str, *, requires_access_token: bool) -> dict[str, Any]:
    """The IG's complete-status body: ``transactionTime`` is the commit the export is pinned to.

    ``requiresAccessToken`` says whether the file URLs need the bearer token (they do whenever
    access control is on: a client that believed the manifest would be refused with 401)."""

    def items(kind: FileKind) -> list[dict[str, Any]]:
        return [
            {
                "type": "Bundle" if kind is FileKind.DELETED else f.res_type,
                "url": file_url(base, job.id, f.ordinal),
                "count": f.count,
            }
            for f in files
            if f.kind is kind and f.count
        ]

    body: dict[str, Any] = {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": requires_access_token,
        "output": items(FileKind.OUTPUT),
        "error": items(FileKind.ERROR),
    }
    if job.request.since is not None:
        body["deleted"] = items(FileKind.DELETED)
    return body


def progress(job: Job) -> str:
    """The ``X-Progress`` text of a job that is not finished."""
    if job.status is Status.ACCEPTED:
        return "queued"
    steps = plan(job.request)
    step = min(job.cursor.step, len(steps) - 1) if steps else 0
    where = f", {steps[step][1]} ({step + 1} of {len(steps)} steps)" if steps else ""
    return f"in progress: {job.exported} resources written{where}"
