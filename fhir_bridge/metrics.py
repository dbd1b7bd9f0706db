"""Prometheus metrics (prometheus-client): what the service does, in counts and timings, never data.

Every layer records into the process's metrics here; the HTTP app serves them at ``/metrics``
(api/observe.py, behind the ``metrics`` setting). Names start with ``fhir_bridge_``:

- ``fhir_bridge_http_requests_total{method, route, status}`` and
  ``fhir_bridge_http_request_duration_seconds{method, route}``: by route *template*
  (``/fhir/{resource_type}/{id}``), never by the path a client sent (it can carry ids);
- ``fhir_bridge_ingest_total{path, outcome}``: what each push path took in: ``stow``, ``dimse`` and
  ``folder`` count DICOM instances (``stored``, ``failed``), ``clinical`` and ``mllp`` count records
  (``created``, ``updated``, ``unchanged``, ``failed``);
- ``fhir_bridge_bulk_jobs_total{outcome}`` and ``fhir_bridge_bulk_job_duration_seconds``;
- ``fhir_bridge_audit_write_seconds``: writing one audit record;
- ``fhir_bridge_database_connections{engine, state}``: the connection pool, read when scraped.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder shared by them
(cleared before they start): every process writes its values there and ``/metrics`` answers the
sum of all of them (prometheus-client's multiprocess mode). The pool gauge is then that of the
process that answered.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

INGEST_PATHS = ("stow", "dimse", "folder", "clinical", "mllp")
DICOM_CHANNELS = {"STOW-RS": "stow", "DICOM C-STORE": "dimse", "command line": "folder"}  # Source.channel -> path

HTTP_REQUESTS = Counter(
    "fhir_bridge_http_requests", "HTTP requests answered, by route template and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "fhir_bridge_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INGEST = Counter(
    "fhir_bridge_ingest",
    "Instances (DICOM) or records (clinical) taken in, by push path and outcome",
    ["path", "outcome"],
)
BULK_JOBS = Counter("fhir_bridge_bulk_jobs", "Bulk export jobs finished, by outcome", ["outcome"])
BULK_DURATION = Histogram(
    "fhir_bridge_bulk_job_duration_seconds",
    "Time a bulk export job ran",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
AUDIT_WRITE = Histogram(
    "fhir_bridge_audit_write_seconds",
    "Time to write one batch of audit records: one transaction, before the answers of its requests leave",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
DATABASE_CONNECTIONS = Gauge(
    "fhir_bridge_database_connections",
    "The database connection pool when scraped: connections checked out, idle in the pool, overflow",
    ["engine", "state"],
    multiprocess_mode="liveall",
)


def record_ingest(path: str, outcome: str, count: int = 1) -> None:
    """The hook every push path calls (the ingests do it for STOW-RS, DIMSE, folders and clinical uploads).

    A listener of its own (the HL7 v2 MLLP listener) whose messages do not go through
    ``ClinicalIngest`` with a channel naming MLLP calls ``record_ingest("mllp", outcome, n)`` itself.
    """
    if path not in INGEST_PATHS:
        raise ValueError(f"unknown ingest path {path!r}: one of {', '.join(INGEST_PATHS)}")
    if count:
        INGEST.labels(path, outcome).inc(count)


def exposition() -> bytes:
    """The metrics in Prometheus's text format: this process's, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
