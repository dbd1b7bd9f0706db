"""The command line's push path: walk folders of DICOM files, read headers in parallel, ingest in batches.

Header reading is pure-Python CPU work, so it runs in worker processes (a few dozen files per
task, a bounded number of tasks in flight so memory stays flat on huge trees) while this process
de-identifies, maps and writes the previous batch. Each batch is one ingest request: one
transaction and one Provenance.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fhir_bridge.dicom.reader import DICOMDIR, DicomInstance, DicomReadError, NotAnInstance, read_many
from fhir_bridge.ingest.dicom import DicomIngest, InstanceOutcome
from fhir_bridge.ingest.provenance import Source

IGNORED_NAMES = frozenset({"DICOMDIR"})
FILES_PER_TASK = 32


@dataclass
class Summary:
    """What a run did, for the command's report; UIDs are only counted, never printed."""

    instances: int = 0
    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not instances, not failures

    def add(self, path: str, outcome: InstanceOutcome) -> None:
        if not outcome.stored:
            self.failed.append((path, outcome.reason or "failed"))
            return
        self.instances += 1
        self.studies.add(outcome.study_uid or "")
        self.series.add(outcome.series_uid or "")
        if outcome.warning is not None:
            self.warnings.append((path, outcome.reason or "stored with a warning"))


def walk(paths: Iterable[str | os.PathLike[str]], summary: Summary) -> list[str]:
    """Every file under ``paths`` (folders recursively, any layout, no DICOMDIR needed), sorted per folder."""
    found: list[str] = []
    for root in paths:
        path = Path(root)
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            for folder, folders, names in os.walk(path):
                folders.sort()
                for name in sorted(names):
                    full = os.path.join(folder, name)
                    if name in IGNORED_NAMES or name.startswith("."):
                        summary.skipped.append((full, DICOMDIR if name in IGNORED_NAMES else "a hidden file"))
                    else:
                        found.append(full)
        else:
            summary.failed.append((str(path), "no such file or folder"))
    return found


def _executor(workers: int) -> Executor | None:
    """Worker processes by the platform's default start method (fork on Linux: no start-up import cost).

    Workers only read files with pydicom; they never touch the database connections they may inherit.
    """
    if workers <= 1:
        return None
    context = multiprocessing.get_context()
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["fhir_bridge.dicom.reader"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def read_all(
    files: list[str], workers: int, in_flight: int = 8
) -> Iterator[tuple[str, DicomInstance | DicomReadError]]:
    """(path, header or failure) for each file, in order; parallel when it helps."""
    tasks = [files[i : i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
    executor = _executor(workers) if len(tasks) > 2 else None
    if executor is None:
        for task in tasks:
            yield from zip(task, read_many(task), strict=True)
        return
    with executor:
        pending: list[tuple[list[str], Future[list[DicomInstance | DicomReadError]]]] = []
        upcoming = iter(tasks)
        for task in upcoming:
            pending.append((task, executor.submit(read_many, task)))
            if len(pending) >= in_flight * workers:
                break
        while pending:
            task, future = pending.pop(0)
            yield from zip(task, future.result(), strict=True)
            following = next(upcoming, None)
            if following is not None:
                pending.append((following, executor.submit(read_many, following)))


def ingest_files(
    ingest: DicomIngest,
    paths: Iterable[str | os.PathLike[str]],
    *,
    workers: int = 1,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Summary:
    """Ingest every file under ``paths``; the summary says what was stored, failed or skipped.

    Files that are no instance at all (DICOMDIRs by name or by content, files that are not DICOM)
    are skipped, not failed: exports and media carry them beside the instances.
    """
    summary = Summary()
    files = walk(paths, summary)
    if on_total:
        on_total(len(files))
    source = Source("command line", f"fhir-bridge ingest on {socket.gethostname()}")
    batch: list[tuple[str, DicomInstance | DicomReadError]] = []
    for item in read_all(files, workers):
        if progress:
            progress(1)
        if isinstance(item[1], NotAnInstance):
            summary.skipped.append((item[0], item[1].reason))
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            _flush(ingest, batch, source, summary)
    if batch:
        _flush(ingest, batch, source, summary)
    return summary


def _flush(
    ingest: DicomIngest,
    batch: list[tuple[str, DicomInstance | DicomReadError]],
    source: Source,
    summary: Summary,
) -> None:
    result = ingest.ingest([item for _, item in batch], source)
    for (path, _), outcome in zip(batch, result.outcomes, strict=True):
        summary.add(path, outcome)
    batch.clear()
