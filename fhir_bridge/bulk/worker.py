"""Background threads that claim export jobs from the database and run them.

A thread lives only while there is work in the database: it starts on a kick-off in this process
(or when the app is created and jobs are pending, e.g. after a restart), keeps polling while jobs
are pending anywhere (another process's lease may run out), and ends when none are. So an idle
app holds no thread and no connection, and a host application needs no lifespan events.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid

from fhir_bridge.errors import FhirError
from fhir_bridge.metrics import BULK_DURATION, BULK_JOBS
from fhir_bridge.store.database import Engines

from .jobs import JobStore, now_micros
from .model import Job, Limits, Status
from .runner import Outcome, run_job

log = logging.getLogger("fhir_bridge.bulk")
SWEEP_INTERVAL_S = 600.0


class ExportWorker:
    """``threads`` workers of this process, each running one job at a time."""

    def __init__(self, engines: Engines, jobs: JobStore, limits: Limits, threads: int = 1) -> None:
        self.engines, self.jobs, self.limits = engines, jobs, limits
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots: list[threading.Thread | None] = [None] * threads
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_sweep = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._slots)

    def kick(self) -> None:
        """Make sure the threads run and look for work now (a job was just created)."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._wake.set()
            for slot, thread in enumerate(self._slots):
                if thread is None:
                    thread = threading.Thread(
                        target=self._loop, args=(slot,), name=f"fhir-bridge-export-{slot}", daemon=True
                    )
                    self._slots[slot] = thread
                    thread.start()

    def resume_pending(self) -> None:
        """Start when jobs are pending in the database (jobs that were running when a process stopped)."""
        if self.enabled and self.jobs.pending()[0]:
            self.kick()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads; a running job is handed back (its lease released) for any worker to resume."""
        with self._lock:
            self._stopping.set()
            self._wake.set()
            threads = [t for t in self._slots if t is not None]
        for thread in threads:
            thread.join(timeout)
        if not any(thread.is_alive() for thread in threads):
            with self._lock:
                self._stopping.clear()  # a later kick (e.g. the app served again) starts afresh

    @property
    def running(self) -> bool:
        return any(t is not None and t.is_alive() for t in self._slots)

    # the thread -------------------------------------------------------------------------------
    def _loop(self, slot: int) -> None:
        owner = f"{self.identity}:{slot}"
        try:
            while not self._stopping.is_set():
                self._sweep()
                job = self.jobs.claim(owner, self.limits.lease_seconds)
                if job is not None:
                    self._run(job, owner)
                    continue
                pending, earliest_expiry = self.jobs.pending()
                with self._lock:
                    if not pending and not self._wake.is_set():
                        self._slots[slot] = None  # nothing left anywhere: end; a kick starts a new thread
                        return
                    self._wake.clear()
                delay = self.limits.poll_seconds
                if earliest_expiry is not None:
                    delay = min(delay, max(0.01, (earliest_expiry - now_micros()) / 1_000_000 + 0.01))
                self._wake.wait(delay)
        except Exception as error:  # the database went away: leases run out and another worker takes over
            log.error("export worker stopped by %s at\n%s", type(error).__name__, _where(error))
        finally:
            with self._lock:
                if self._slots[slot] is threading.current_thread():
                    self._slots[slot] = None

    def _run(self, job: Job, owner: str) -> None:
        started = time.monotonic()
        try:
            outcome = run_job(self.engines, self.jobs, job, owner, self.limits, self._stopping.is_set)
        except FhirError as error:
            self.jobs.finish(job.id, owner, Status.FAILED, error.diagnostics)
            BULK_JOBS.labels("failed").inc()
            return
        except Exception as error:
            log.error("export %s failed: %s at\n%s", job.id, type(error).__name__, _where(error))
            # only the type: a database message can carry data
            self.jobs.finish(job.id, owner, Status.FAILED, f"the export failed ({type(error).__name__})")
            BULK_JOBS.labels("failed").inc()
            return
        if outcome is Outcome.STOPPED:
            self.jobs.release(job.id, owner)
        elapsed = time.monotonic() - started
        BULK_JOBS.labels(outcome.value).inc()
        BULK_DURATION.observe(elapsed)
        log.info("export %s %s after %.1f s", job.id, outcome.value, elapsed)

    def _sweep(self) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL_S:
            return
        self._last_sweep = time.monotonic()
        removed = self.jobs.sweep(self.limits.retention_hours)
        if removed:
            log.info("removed %d export jobs finished more than %s hours ago", removed, self.limits.retention_hours)


def _where(error: BaseException) -> str:
    return "".join(traceback.format_tb(error.__traceback__))
