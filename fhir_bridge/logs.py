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
import logging.config
import time
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("fhir_bridge_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"
_QUIET = {"pynetdicom": logging.WARNING, "pydicom": logging.ERROR}  # their INFO/DEBUG lines quote the data
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


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


def dict_config(level: str = "info", json_lines: bool = False) -> dict[str, Any]:
    """The logging set-up as a ``logging.config.dictConfig`` dictionary: every logger, uvicorn's included, to
    stderr in one format. uvicorn applies it in each worker process (``serve --workers``) as ``log_config``."""
    name = level.upper()
    formatter: dict[str, Any] = {"()": JsonFormatter} if json_lines else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": _RequestIdFilter}},
        "formatters": {"one": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id"],
                "formatter": "one",
            }
        },
        "root": {"level": name, "handlers": ["stderr"]},
        "loggers": {
            **{uvicorn: {"level": name, "handlers": [], "propagate": True} for uvicorn in _UVICORN},
            **{quiet: {"level": max(logging.getLevelName(name), floor)} for quiet, floor in _QUIET.items()},
        },
    }


def configure(level: str = "info", json_lines: bool = False) -> None:
    """Route every logger to stderr in one format (replacing handlers set before, e.g. by basicConfig)."""
    logging.config.dictConfig(dict_config(level, json_lines))
