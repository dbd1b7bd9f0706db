"""Logging: one format for fhir-bridge's and uvicorn's lines, text or JSON, with each request's id.

``configure(level, json_lines)`` sets up the root logger once for the process (``serve``, ``dimse``,
the ingest commands); uvicorn is started with ``log_config=None`` so that its loggers (``uvicorn``,
``uvicorn.error``, ``uvicorn.access``) propagate here instead of printing in a format of their own.
The HTTP app puts each request's id in ``request_id`` (api/observe.py) and every line logged while
the request runs carries it.

What is logged is counts, ids of jobs and requests, and error types: never values from the data
(tests/test_logging.py runs a workload and scans the lines for the patients' names and identifiers).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("fhir_bridge_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"
_QUIET = {"pynetdicom": logging.WARNING, "pydicom": logging.ERROR}  # their INFO/DEBUG lines quote the data


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = rid
        record.request = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            line["request_id"] = rid
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__  # the type only: messages can quote the data
        return json.dumps(line, ensure_ascii=False)


def configure(level: str = "info", json_lines: bool = False) -> None:
    """Route every logger to stderr in one format (replacing handlers set before, e.g. by basicConfig)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(level.upper())
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
