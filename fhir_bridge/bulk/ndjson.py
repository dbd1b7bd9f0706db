"""NDJSON lines and the writer that turns a stream of them into bounded, resumable file chunks.

Output lines are the stored JSON of each version, byte for byte (what a read returns). The writer
keeps at most one chunk of text in memory; each chunk is committed together with the job's
cursor (the last pk in it), so a job taken over by another worker resumes right after the last
committed line, without gaps or repeats. Files are cut at ``Limits.file_resources`` lines.
"""

from __future__ import annotations

import time
import uuid

import orjson

from fhir_bridge.store.versions import format_instant

from .jobs import Chunk, JobStore
from .model import Cursor, FileKind, Job, Limits

_DELETED_NAMESPACE = uuid.UUID("6f1d3c2e-6b0e-4d8e-9a51-7c1b9b2f4a10")


def deleted_line(res_type: str, res_id: str, version: int, last_updated: int) -> str:
    """A transaction Bundle with one DELETE entry, as the IG's ``deleted`` files hold.

    Its id is derived from the deleted version, so a resumed job writes the same line again.
    """
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_DELETED_NAMESPACE, f"{res_type}/{res_id}/{version}")),
        "meta": {"lastUpdated": format_instant(last_updated)},
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"{res_type}/{res_id}"}}],
    }
    return orjson.dumps(bundle).decode()


def outcome_line(diagnostics: str, severity: str = "error", code: str = "processing") -> str:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
    return orjson.dumps(outcome).decode()


def chunk_of(lines: list[str]) -> Chunk:
    text = "".join(f"{line}\n" for line in lines)
    return Chunk(text, len(lines), len(text.encode("utf-8")))


class NdjsonWriter:
    """Buffers lines of the current step and commits them chunk by chunk under the job's lease."""

    def __init__(self, jobs: JobStore, job: Job, owner: str, limits: Limits) -> None:
        self.jobs, self.job_id, self.owner, self.limits = jobs, job.id, owner, limits
        self.cursor = job.cursor
        self.exported = job.exported
        self._lines: list[str] = []
        self._chars = 0
        self._new_file: tuple[FileKind, str] | None = None
        self._last_write = time.monotonic()

    def begin_step(self, step: int) -> None:
        """Start (or, after a take-over, continue) step ``step``; each step has its own files."""
        if step != self.cursor.step:
            if self._lines:  # an empty step costs no write: resuming would redo only its (empty) query
                self.flush()
            self.cursor = Cursor(step)

    def add(self, line: str, pk: int, kind: FileKind, res_type: str) -> None:
        if self.cursor.in_file >= self.limits.file_resources:
            self.flush()
            self.cursor = Cursor(self.cursor.step, self.cursor.pk)  # the next line starts a new file
        if self.cursor.file_id is None and self._new_file is None:
            self._new_file = (kind, res_type)
        self._lines.append(line)
        self._chars += len(line) + 1
        self.exported += 1
        self.cursor = Cursor(self.cursor.step, pk, self.cursor.file_id, self.cursor.in_file + 1)
        if self._chars >= self.limits.chunk_bytes:
            self.flush()

    def heartbeat(self) -> None:
        """Commit what is buffered when the lease needs renewing, even if the chunk is not full."""
        if time.monotonic() - self._last_write >= self.limits.lease_seconds / 3:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered lines with the cursor (``LeaseLost`` when the job is gone)."""
        chunk = chunk_of(self._lines) if self._lines else None
        file_id = self.jobs.write(
            self.job_id,
            self.owner,
            self.limits.lease_seconds,
            cursor=self.cursor,
            exported=self.exported,
            new_file=self._new_file,
            chunk=chunk,
        )
        self.cursor = Cursor(self.cursor.step, self.cursor.pk, file_id, self.cursor.in_file)
        self._lines, self._chars, self._new_file = [], 0, None
        self._last_write = time.monotonic()
