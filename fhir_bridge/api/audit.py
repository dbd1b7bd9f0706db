"""``[base]/AuditEvent``: the audit trail, read-only, for clients granted ``system/AuditEvent.rs``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.context import fhir_base, query_parameters, services
from fhir_bridge.api.fhir import FHIR_RESPONSES, FhirJsonResponse
from fhir_bridge.api.rendering import Presentation, presentation, render
from fhir_bridge.audit.events import audit_event, search_conditions
from fhir_bridge.audit.log import AuditLog
from fhir_bridge.errors import FhirError
from fhir_bridge.search.query import parse_count

router = APIRouter(default_response_class=FhirJsonResponse)  # documents what render() answers in


def _audit(request: Request) -> AuditLog:
    return services(request).audit_log


@router.get("/AuditEvent", summary="search the audit trail", responses=FHIR_RESPONSES)
async def search(request: Request, view: Presentation = Depends(presentation)) -> Response:
    settings = services(request).settings
    parameters = query_parameters(request)
    conditions, after = search_conditions(parameters)
    raw_count = next((v for k, v in parameters if k == "_count"), None)
    count = parse_count(raw_count, settings.max_count) if raw_count is not None else settings.default_count
    rows = await run_in_threadpool(_audit(request).search, conditions, after=after, count=count + 1)
    base = fhir_base(request)
    kept = [(k, v) for k, v in parameters if k != "_after"]
    links = [
        {
            "relation": "self",
            "url": f"{base}/AuditEvent?{urlencode(kept + ([('_after', str(after))] if after else []))}",
        }
    ]
    if len(rows) > count:
        rows = rows[:count]
        links.append(
            {"relation": "next", "url": f"{base}/AuditEvent?{urlencode([*kept, ('_after', str(rows[-1].id))])}"}
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if rows:  # json.html: no empty arrays
        bundle["entry"] = [
            {"fullUrl": f"{base}/AuditEvent/{row.id}", "resource": audit_event(row), "search": {"mode": "match"}}
            for row in rows
        ]
    return render(bundle, 200, view)


@router.get("/AuditEvent/{record_id}", summary="read an audit record", responses=FHIR_RESPONSES)
async def read(record_id: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    row = await run_in_threadpool(_audit(request).read, int(record_id)) if record_id.isdigit() else None
    if row is None:
        raise FhirError(404, f"AuditEvent/{record_id} is not known", code="not-found")
    return render(audit_event(row), 200, view)


async def _read_only(request: Request) -> Response:
    raise FhirError(
        405,
        "the audit trail is written by the server only: AuditEvent cannot be created, changed or deleted",
        code="not-supported",
    )


for _path in ("/AuditEvent", "/AuditEvent/{record_id}"):
    router.add_api_route(_path, _read_only, methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)

# What the CapabilityStatement says of AuditEvent (api.capabilities): the interactions of these routes,
# and the search parameters of audit.events, nothing else (no history, no operations, no writes).
TYPE = "AuditEvent"
ROUTE_INTERACTIONS = {search: ("search-type",), read: ("read",)}
