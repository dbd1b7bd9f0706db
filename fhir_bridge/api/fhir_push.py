"""``POST /ingest/fhir``: identifiable FHIR from an EHR or integration engine, through the privacy layer.

A transaction or batch Bundle (``application/fhir+json``) or NDJSON (``application/fhir+ndjson``,
``application/x-ndjson``): every resource is de-identified by the site's policy (``ingest.fhir``)
and the push is written all or nothing, with one Provenance. The plain REST API (``/fhir``) stores
what it is given; this endpoint is the one for data that still names the patient.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.access import require
from fhir_bridge.api.context import read_body, services
from fhir_bridge.api.media_types import parse_media_type
from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.fhir import Pushed, bundle_items, ndjson_items
from fhir_bridge.ingest.provenance import Source
from fhir_bridge.security.policy import writes
from fhir_bridge.spec.validation import parse_json

NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/x-ndjson", "application/ndjson"})
JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
PUSH_BODY = {
    "requestBody": {
        "required": True,
        "description": "A transaction or batch Bundle of resources to store (POST and PUT entries), or NDJSON: one "
        "resource a line. Patients need an identifier; references between the resources may use fullUrls, "
        "Type/id or Patient?identifier=system|value",
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/fhir+ndjson": {"schema": {"type": "string"}},
        },
    }
}
PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "What was stored: each resource's entry (Bundle.entry[n] or line n), its reference as stored "
        "and created / updated / unchanged; the Provenance",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "4XX": {
        "description": "An OperationOutcome naming the entry or line at fault; nothing was stored",
        "content": {"application/fhir+json": {}},
    },
}

router = APIRouter()


def _items(media_type: str, body: bytes) -> list[Pushed]:
    if media_type in NDJSON_TYPES:
        lines = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append((number, orjson.loads(line)))
            except orjson.JSONDecodeError as error:
                raise FhirError(400, f"line {number} is not valid JSON: {error}", code="invalid") from None
        return ndjson_items(lines)
    if media_type in JSON_TYPES or not media_type:
        _kind, items = bundle_items(parse_json(body))
        return items
    raise FhirError(
        415,
        f"{media_type} is no input here: send a Bundle (application/fhir+json) or NDJSON (application/fhir+ndjson)",
        code="not-supported",
    )


@router.post(
    "/fhir",
    summary="Ingest identifiable FHIR (transaction/batch Bundle or NDJSON) through the privacy layer",
    openapi_extra=PUSH_BODY,
    responses=PUSH_RESPONSES,
    response_class=JSONResponse,
)
async def ingest_fhir(request: Request) -> JSONResponse:
    require(request, writes({"Provenance"}))  # every push writes one: refused before the body is read
    media_type = parse_media_type(request.headers.get("content-type")).value
    items = _items(media_type, await read_body(request))
    require(request, writes({item.resource.get("resourceType", "") for item in items} | {"Provenance"}))
    client = request.client.host if request.client else "unknown"
    ingest = services(request).fhir_ingest
    result = await run_in_threadpool(ingest.ingest, items, Source("HTTP POST /ingest/fhir", client))
    return JSONResponse(result.as_json())
