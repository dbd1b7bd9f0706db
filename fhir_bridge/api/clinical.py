"""``POST /ingest/clinical?mapping=NAME``: push a CSV, NDJSON, JSON or HL7 v2 body through a mapping.

The body is spooled as it streams in (memory up to 4 MiB, disk beyond) and read record by record;
the per-record results are spooled the same way and streamed back, so a 100,000-row export costs
constant memory on both sides. The answer says, for each record, created / updated / unchanged /
failed (with row, line, column and reason) and the references it wrote. ``mode=per-record`` (the
default) stores every good record and reports the bad ones (200); ``mode=atomic`` stores all or
nothing (200, or 422 with nothing written). ``dry-run=true`` writes nothing and shows, per record, the
resources that would be written and every problem. ``report=ndjson`` (or ``Accept:
application/x-ndjson``) answers with the row report as a file to download: one line per record, as
``fhir-bridge ingest-clinical --report`` writes it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.access import annotate, require
from fhir_bridge.api.context import services
from fhir_bridge.api.media_types import parse_media_type
from fhir_bridge.api.rendering import spool_body
from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.clinical import ClinicalIngest, IngestRefused, RecordResult, Summary
from fhir_bridge.ingest.provenance import Source
from fhir_bridge.mapping.clinical import MappingError, MappingRegistry, Reader, ReaderOptions, UnknownMapping
from fhir_bridge.mapping.clinical.compiler import Mapping
from fhir_bridge.security.policy import reads, writes

SPOOL_BYTES = 4 * 1024 * 1024
GENERIC_TYPES = frozenset({"", "application/octet-stream", "text/plain"})
INGEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "The export: CSV (text/csv), NDJSON (application/x-ndjson), a JSON array of objects or "
        "one object (application/json), HL7 v2 ER7 (x-application/hl7-v2+er7), or a plugin's format; "
        "with another or no Content-Type, the mapping's source format",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.ms-excel": {
                "schema": {"type": "string"},
                "description": "CSV, as Windows browsers send it",
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "x-application/hl7-v2+er7": {"schema": {"type": "string"}},
        },
    }
}
RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "mapping": {"type": "string"},
        "mode": {"type": "string", "enum": ["per-record", "atomic"]},
        "dryRun": {"type": "boolean", "description": "true: nothing was written; each record shows its resources"},
        "summary": {"type": "object"},
        "provenance": {"type": "array", "items": {"type": "string"}},
        "records": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "row": {"type": "integer"},
                    "line": {"type": "integer"},
                    "status": {"type": "string", "enum": ["created", "updated", "unchanged", "failed", "not-written"]},
                    "resources": {"type": "array", "items": {"type": "object"}},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Per-record results (report=ndjson: one line per record, as a file to download)",
        "content": {"application/json": {"schema": RESULT_SCHEMA}, "application/x-ndjson": {}},
    },
    422: {
        "description": "atomic mode: a record failed, nothing was written (same body)",
        "content": {"application/json": {"schema": RESULT_SCHEMA}},
    },
    "4XX": {
        "description": "An OperationOutcome (unknown mapping, unsupported media type, ...)",
        "content": {"application/fhir+json": {}},
    },
}

router = APIRouter()


def mapping_types(mapping: Mapping) -> set[str]:
    """What an ingest through ``mapping`` may create or update: its resources, the Patient, the Provenance."""
    return (
        {rule.resource_type for rule in mapping.resources}
        | {"Provenance"}
        | ({"Patient"} if mapping.patient else set())
    )


def _registry(request: Request) -> MappingRegistry:
    return services(request).mappings


def _ingest(request: Request) -> ClinicalIngest:
    return services(request).clinical_ingest


def load_mapping(registry: MappingRegistry, name: str) -> Mapping:
    """The named mapping; 404 when unknown, 500 naming every problem when its file is malformed."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise FhirError(400, f"{name!r} is not a mapping name", code="invalid", expression="mapping")
    try:
        return registry.load(name)
    except UnknownMapping as error:
        raise FhirError(404, str(error), code="not-found", expression="mapping") from None
    except MappingError as error:
        raise FhirError(
            500,
            f"the mapping {name!r} is not usable, nothing was read: " + "; ".join(str(p) for p in error.problems),
            code="exception",
        ) from None


def _reader(registry: MappingRegistry, mapping: Mapping, content_type: str | None, chosen: str | None) -> Reader:
    try:
        if chosen:
            return registry.reader(chosen)
        media = parse_media_type(content_type).value
        reader = registry.reader_for_media_type(media)
        if reader is not None:
            return reader
        if media in GENERIC_TYPES and mapping.source_format:
            return registry.reader(mapping.source_format)
    except UnknownMapping as error:
        raise FhirError(400, str(error), code="not-supported", expression="format") from None
    raise FhirError(
        415,
        f"{media or 'a body without Content-Type'} is no input format here; send text/csv, application/x-ndjson, "
        "application/json or x-application/hl7-v2+er7, or name ?format=",
        code="not-supported",
    )


async def _spool(request: Request) -> IO[bytes]:
    """The body in a temporary file; its size and pace are limited by ``api.limits`` (413, 408)."""
    body, _size = await spool_body(request, SPOOL_BYTES)  # handed to the response, which closes it
    return body


FAILURES_AUDITED = 5  # failed records whose reasons the audit trail keeps (with the count of all)


def _run(
    ingest: ClinicalIngest,
    mapping: Mapping,
    reader: Reader,
    body: IO[bytes],
    source: Source,
    atomic: bool,
    failures: list[RecordResult],
    dry_run: bool = False,
    lines: bool = False,
) -> tuple[Summary, IO[bytes]]:
    """Ingest the body; the results spooled as JSON array elements, or (``lines``) as NDJSON lines."""
    results = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (streamed, then closed)
    separator = b""

    def write(result: RecordResult) -> None:
        nonlocal separator
        if result.status == "failed" and len(failures) < FAILURES_AUDITED:
            failures.append(result)
        if lines:
            results.write(orjson.dumps(result.as_json()) + b"\n")
            return
        results.write(separator + orjson.dumps(result.as_json()))
        separator = b",\n"

    try:
        records = reader.read(body, ReaderOptions(mapping.delimiter, mapping.encoding))  # type: ignore[arg-type]
        summary = ingest.ingest(mapping, records, source, atomic=atomic, on_result=write, dry_run=dry_run)
    except LookupError as error:  # an unknown text encoding named by the mapping
        results.close()
        raise FhirError(500, f"the mapping's input settings are not usable: {error}", code="exception") from None
    except IngestRefused as error:  # a header without the mapping's columns, a ConceptMap not stored
        results.close()
        raise FhirError(422, str(error), code="invalid") from None
    finally:
        body.close()
    results.seek(0)
    return summary, results


def _failures(summary: Summary, failures: list[RecordResult]) -> str:
    """``2 of 10 records failed (row 3: icd10: reason; diagnosis_date: reason; row 4: ...)``."""
    rows = [
        f"row {r.row}: " + "; ".join(f"{e.column}: {e.reason}" if e.column else e.reason for e in r.errors)
        for r in failures
    ]
    more = ", ..." if summary.failed > len(failures) else ""
    return f"{summary.failed} of {summary.records} records failed ({'; '.join(rows)}{more})"


def _stream(head: bytes, results: IO[bytes], tail: bytes = b"\n]}\n") -> Iterator[bytes]:
    try:
        yield head
        while chunk := results.read(1 << 16):
            yield chunk
        yield tail
    finally:
        results.close()


@router.post(
    "/clinical",
    summary="Ingest clinical records through a mapping (CSV, NDJSON, JSON, HL7 v2 ORU^R01)",
    openapi_extra=INGEST_BODY,
    responses=INGEST_RESPONSES,
    response_class=Response,
)
async def ingest_clinical(
    request: Request,
    mapping: str = Query(..., description="The mapping's name, e.g. radiology-report"),
    mode: Literal["per-record", "atomic"] = Query(
        "per-record",
        description="per-record (default): good records are stored, bad ones reported; atomic: all or none",
    ),
    format: str | None = Query(None, description="The input format, when the Content-Type does not say it"),
    dry_run: bool = Query(
        False,
        alias="dry-run",
        description="true: write nothing; each record shows the resources that would be written and every problem",
    ),
    report: Literal["json", "ndjson"] | None = Query(
        None,
        description="ndjson: the row report as a file to download, one line per record (as the CLI's --report); "
        "also chosen by Accept: application/x-ndjson",
    ),
) -> Response:
    registry = _registry(request)
    chosen = load_mapping(registry, mapping)  # a malformed mapping is refused before the body is read
    require(request, writes(mapping_types(chosen)))
    if chosen.concept_maps:  # the mapping's code maps are read from the store on the client's behalf
        require(request, reads({"ConceptMap"}))
    reader = _reader(registry, chosen, request.headers.get("content-type"), format)
    lines = report == "ndjson" or (report is None and "application/x-ndjson" in request.headers.get("accept", ""))
    body = await _spool(request)
    client = request.client.host if request.client else "unknown"
    source = Source("HTTP POST /ingest/clinical", client)
    failures: list[RecordResult] = []
    summary, results = await run_in_threadpool(
        _run, _ingest(request), chosen, reader, body, source, mode == "atomic", failures, dry_run, lines
    )
    if summary.failed:  # the trail keeps which records failed and why (quoted values keyed-hashed there)
        annotate(request, detail=_failures(summary, failures))
    status = 422 if mode == "atomic" and summary.failed else 200
    if lines:
        name = f"{chosen.name}-{'dry-run-' if dry_run else ''}report.ndjson"
        return StreamingResponse(
            _stream(b"", results, b""),
            status_code=status,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    head = orjson.dumps(
        {
            "mapping": chosen.name,
            "mode": mode,
            **({"dryRun": True} if dry_run else {}),
            "summary": summary.as_json(),
            "provenance": summary.provenance,
        }
    )
    return StreamingResponse(
        _stream(head[:-1] + b',"records":[\n', results), status_code=status, media_type="application/json"
    )
