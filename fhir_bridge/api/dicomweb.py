"""DICOMweb STOW-RS: ``POST /dicomweb/studies[/{study}]`` stores instances pushed by PACS, routers and clients.

The body is never read whole: it is parsed as it streams in, each part spooled to a temporary file
(memory up to 1 MiB, disk beyond) and its header read at once, so memory stays flat however many
parts or bytes a request holds. Every part sent gets one item in the response, in the Referenced
SOP Sequence or the Failed SOP Sequence with a PS3.18 failure reason, because senders check that
count. Status: 200 all stored, 202 some failed or stored with a warning, 409 none stored; 400 for
a body that is not the multipart message its Content-Type announces, 415 for other media types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from fhir_bridge.api.access import annotate
from fhir_bridge.api.context import services
from fhir_bridge.api.media_types import parse_media_type
from fhir_bridge.api.multipart import SPOOL_BYTES, MultipartError, MultipartParser, Part
from fhir_bridge.api.rendering import spool_body
from fhir_bridge.dicom.reader import CANNOT_UNDERSTAND, DicomInstance, DicomReadError, read_stream
from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.dicom import DicomIngest, IngestResult
from fhir_bridge.ingest.provenance import Source

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
STOW_BODY = {
    "requestBody": {
        "required": True,
        "description": 'multipart/related; type="application/dicom"; boundary=...: one DICOM Part-10 instance per '
        "part; or a single instance as application/dicom",
        "content": {
            "multipart/related": {"schema": {"type": "string", "format": "binary"}},
            DICOM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "All instances stored (DICOM JSON Store Instances Response)", "content": {DICOM_JSON: {}}},
    202: {"description": "Some instances stored, some failed or stored with a warning", "content": {DICOM_JSON: {}}},
    409: {"description": "No instance could be stored; the Failed SOP Sequence says why", "content": {DICOM_JSON: {}}},
    400: {
        "description": "The body is not a well-formed multipart/related message",
        "content": {"application/fhir+json": {}},
    },
    415: {
        "description": "A media type other than multipart/related or application/dicom",
        "content": {"application/fhir+json": {}},
    },
    "4XX": {
        "description": "An OperationOutcome (413 too large, 408 stalled, ...)",
        "content": {"application/fhir+json": {}},
    },
}

router = APIRouter()


def _ingest(request: Request) -> DicomIngest:
    return services(request).dicom_ingest


@router.post(
    "/studies", summary="STOW-RS: store instances", openapi_extra=STOW_BODY, responses=STOW_RESPONSES, status_code=200
)
async def store_instances(request: Request) -> Response:
    return await _store(request, None)


@router.post(
    "/studies/{study}",
    summary="STOW-RS: store instances of one study",
    openapi_extra=STOW_BODY,
    responses=STOW_RESPONSES,
    status_code=200,
)
async def store_study_instances(study: str, request: Request) -> Response:
    return await _store(request, study)


async def _store(request: Request, study: str | None) -> Response:
    media = parse_media_type(request.headers.get("content-type"))
    try:
        if media.value == "multipart/related":
            items = await _receive_multipart(request, media.parameters)
        elif media.value == DICOM:
            items = await _receive_single(request)
        else:
            raise FhirError(
                415,
                f'STOW-RS takes multipart/related; type="{DICOM}" or a single {DICOM} body, '
                f"not {media.value or 'a body without Content-Type'}",
                code="not-supported",
            )
    except ClientDisconnect:
        raise FhirError(
            400, "the client disconnected before the request body was complete; nothing was stored"
        ) from None
    result = await run_in_threadpool(_ingest(request).ingest, items, _source(request, items), study)
    problems = _problems(result)
    if problems:  # the trail keeps why instances failed or were stored with a warning (the steward's UI shows it)
        annotate(request, detail=problems)
    return _response(result)


def _problems(result: IngestResult) -> str | None:
    """``2 of 5 instances failed (C000: reason x2); 1 stored with a warning (B000: reason)``, or None."""
    failed = [o for o in result.outcomes if not o.stored]
    warned = [o for o in result.outcomes if o.stored and o.warning is not None]
    if not failed and not warned:
        return None

    def reasons(outcomes: list[Any], status: str) -> str:
        counted: dict[str, int] = {}
        for outcome in outcomes:
            key = f"{getattr(outcome, status):04X}: {outcome.reason or 'no reason given'}"
            counted[key] = counted.get(key, 0) + 1
        return "; ".join(f"{key} x{n}" if n > 1 else key for key, n in counted.items())

    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(result.outcomes)} instances failed ({reasons(failed, 'failure')})")
    if warned:
        parts.append(f"{len(warned)} stored with a warning ({reasons(warned, 'warning')})")
    return "; ".join(parts)


async def _receive_multipart(request: Request, parameters: dict[str, str]) -> list[DicomInstance | DicomReadError]:
    root_type = parameters.get("type", DICOM).lower()
    if root_type != DICOM:
        raise FhirError(
            415,
            f"this STOW-RS service stores {DICOM} parts, not {root_type} (no metadata + bulk data)",
            code="not-supported",
        )
    boundary = parameters.get("boundary")
    if not boundary:
        raise FhirError(400, "the multipart/related Content-Type has no boundary parameter", code="invalid")
    items: list[DicomInstance | DicomReadError] = []
    try:
        parser = MultipartParser(boundary)
        async for chunk in request.stream():
            parts = parser.feed(chunk)
            if parts:
                items.extend(await run_in_threadpool(_read_parts, parts))
        parts = parser.finish()
    except MultipartError as error:
        raise FhirError(400, f"the multipart body is malformed: {error}; nothing was stored", code="invalid") from None
    items.extend(await run_in_threadpool(_read_parts, parts))
    if not items:
        raise FhirError(400, "the multipart body holds no part", code="invalid")
    return items


async def _receive_single(request: Request) -> list[DicomInstance | DicomReadError]:
    spool, size = await spool_body(request, SPOOL_BYTES)  # _read_parts closes it
    return await run_in_threadpool(_read_parts, [Part(0, {"content-type": DICOM}, spool, size)])


def _read_parts(parts: Iterable[Part]) -> list[DicomInstance | DicomReadError]:
    """Read each part's DICOM header (in a worker thread), then drop the part's bytes."""
    results: list[DicomInstance | DicomReadError] = []
    for part in parts:
        try:
            results.append(_read_part(part))
        finally:
            part.close()
    return results


def _read_part(part: Part) -> DicomInstance | DicomReadError:
    if not part.complete:
        return DicomReadError(CANNOT_UNDERSTAND, "the request body ended inside this part")
    if part.content_type not in (None, DICOM, "application/octet-stream"):
        return DicomReadError(CANNOT_UNDERSTAND, f"the part is {part.content_type}, not {DICOM}")
    try:
        return read_stream(part.content)
    except DicomReadError as error:
        return error


def _source(request: Request, items: list[DicomInstance | DicomReadError]) -> Source:
    """The sender as the Provenance names it: address, client software and DICOM AE title when sent."""
    host = request.client.host if request.client else "unknown address"
    agent = (request.headers.get("user-agent") or "").strip()[:100]
    titles = sorted({i.source_ae_title for i in items if isinstance(i, DicomInstance) and i.source_ae_title})
    details = [f"user agent {agent}"] if agent else []
    details += [f"AE title {', '.join(titles[:3])}"] if titles else []
    return Source("STOW-RS", host + (f" ({'; '.join(details)})" if details else ""))


def _response(result: IngestResult) -> Response:
    referenced, failed = [], []
    for outcome in result.outcomes:
        item: dict[str, Any] = {
            "00081150": _element("UI", outcome.sop_class_uid),
            "00081155": _element("UI", outcome.sop_instance_uid),
        }
        if outcome.stored:
            if outcome.warning is not None:
                item["00081196"] = _element("US", outcome.warning)
            referenced.append(item)
        else:
            item["00081197"] = _element("US", outcome.failure)
            item["00000902"] = _element("LO", (outcome.reason or "")[:64])  # Error Comment: the reason, as text
            failed.append(item)
    body: dict[str, Any] = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    warned = any(outcome.stored and outcome.warning is not None for outcome in result.outcomes)
    status = 409 if not referenced else 202 if failed or warned else 200
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)


def _element(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}
