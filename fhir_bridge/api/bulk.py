"""Bulk Data Access (HL7 FHIR Bulk Data Access IG v2): ``$export`` kick-off, status, files, cancel.

These routes are included before the REST routes, so that ``Patient/$export`` is the operation
and not a read of a Patient with id ``$export``.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.access import principal_of, require
from fhir_bridge.api.context import fhir_base, prefer, read_body, services
from fhir_bridge.api.fhir import FHIR_RESPONSES
from fhir_bridge.api.rendering import render, require_json_body
from fhir_bridge.bulk.manifest import manifest, progress, status_url
from fhir_bridge.bulk.model import Status
from fhir_bridge.bulk.parameters import read_export_request
from fhir_bridge.bulk.service import BulkExports
from fhir_bridge.errors import FhirError, operation_outcome
from fhir_bridge.interactions.parameters import typed_value
from fhir_bridge.security.policy import reads, type_filter_needs
from fhir_bridge.spec.validation import parse_json

NDJSON = "application/fhir+ndjson"
RETRY_AFTER_S = 1
KICK_OFF_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: poll the URL in Content-Location"},
    **FHIR_RESPONSES,
}
PARAMETERS_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/fhir+json": {
                "schema": {"type": "object", "description": "A FHIR Parameters resource with the $export parameters"}
            }
        },
    }
}

router = APIRouter()


def _exports(request: Request) -> BulkExports:
    return services(request).bulk_exports


def _parameter_value(parameter: dict[str, Any]) -> str:
    """A kick-off parameter's value as the query string would carry it (a Reference as its reference)."""
    kind, value = typed_value(parameter)
    if kind == "Resource":
        raise FhirError(400, f"parameter {parameter.get('name')!r} must have a value", code="invalid")
    if isinstance(value, dict):
        return str(value.get("reference", ""))
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


async def _post_parameters(request: Request) -> list[tuple[str, str]]:
    """The parameters of a POST kick-off: a FHIR ``Parameters`` body."""
    raw = await read_body(request)
    if not raw.strip():
        return []
    require_json_body(request)
    body = parse_json(raw)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "a POST $export takes a Parameters resource", code="invalid")
    found = []
    for parameter in body.get("parameter") or []:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise FhirError(400, "every Parameters.parameter needs a name", code="invalid", expression="Parameters")
        found.append((parameter["name"], _parameter_value(parameter)))
    return found


async def _kick_off(request: Request, level: str, group_id: str | None = None) -> Response:
    preferences = prefer(request)
    if "respond-async" not in preferences:
        raise FhirError(400, "$export runs asynchronously: send Prefer: respond-async", code="invalid")
    parameters = list(request.query_params.multi_items())
    if request.method == "POST":
        parameters += await _post_parameters(request)
    parameters = _authorised_types(request, level, parameters, group_id)
    base = fhir_base(request)
    operation = {"system": "$export", "patient": "Patient/$export", "group": f"Group/{group_id}/$export"}[level]
    request_url = f"{base}/{operation}" + (f"?{request.url.query}" if request.url.query else "")
    job = await run_in_threadpool(
        _exports(request).kick_off,
        level,
        parameters,
        lenient=preferences.get("handling") == "lenient",
        request_url=request_url,
        group_id=group_id,
        owner=_owner(request),
    )
    notes = [operation_outcome("export accepted", severity="information", code="informational")["issue"][0]]
    notes += [{"severity": "warning", "code": "not-supported", "diagnostics": w} for w in job.request.warnings]
    return render(
        {"resourceType": "OperationOutcome", "issue": notes},
        202,
        headers={"Content-Location": status_url(base, job.id)},
    )


def _owner(request: Request) -> str | None:
    """Who owns the jobs this request starts or sees: the token's issuer and client (None: access control off)."""
    principal = principal_of(request)
    return principal.owner if principal else None


def _authorised_types(
    request: Request, level: str, parameters: list[tuple[str, str]], group_id: str | None
) -> list[tuple[str, str]]:
    """Bulk export needs read on every exported type. Without ``_type`` the export covers the types
    the token can read (the Bulk Data IG: "all resources within the scope of the client authorization")."""
    principal = principal_of(request)
    if principal is None:
        return parameters
    export = read_export_request(level, parameters, lenient=True, group_id=group_id)
    require(request, type_filter_needs(export.type_filters))  # each filter is a search of the client's
    exported = export.types
    if any(name == "_type" for name, _ in parameters):
        require(request, reads(exported))
        return parameters
    readable = principal.grant.readable_types(list(exported))
    if not readable:
        require(request, reads(exported[:1]))  # 403 naming what would be needed
    if len(readable) == len(exported):
        return parameters
    return [*parameters, ("_type", ",".join(readable))]


@router.get("/$export", summary="bulk export of everything ($export)", responses=KICK_OFF_RESPONSES)
async def export_system(request: Request) -> Response:
    return await _kick_off(request, "system")


@router.post(
    "/$export",
    summary="bulk export of everything ($export)",
    openapi_extra=PARAMETERS_BODY,
    responses=KICK_OFF_RESPONSES,
)
async def export_system_post(request: Request) -> Response:
    return await _kick_off(request, "system")


@router.get("/Patient/$export", summary="bulk export of all patients' data", responses=KICK_OFF_RESPONSES)
async def export_patients(request: Request) -> Response:
    return await _kick_off(request, "patient")


@router.post(
    "/Patient/$export",
    summary="bulk export of all patients' data",
    openapi_extra=PARAMETERS_BODY,
    responses=KICK_OFF_RESPONSES,
)
async def export_patients_post(request: Request) -> Response:
    return await _kick_off(request, "patient")


@router.get("/Group/{group_id}/$export", summary="bulk export of a Group's patients", responses=KICK_OFF_RESPONSES)
async def export_group(group_id: str, request: Request) -> Response:
    return await _kick_off(request, "group", group_id)


@router.post(
    "/Group/{group_id}/$export",
    summary="bulk export of a Group's patients",
    openapi_extra=PARAMETERS_BODY,
    responses=KICK_OFF_RESPONSES,
)
async def export_group_post(group_id: str, request: Request) -> Response:
    return await _kick_off(request, "group", group_id)


@router.get(
    "/$export-status/{job_id}",
    summary="bulk export status: 202 while running, 200 with the manifest when complete",
    responses={
        200: {"description": "The manifest", "content": {"application/json": {}}},
        202: {"description": "In progress (X-Progress, Retry-After)"},
        **FHIR_RESPONSES,
    },
)
def export_status(job_id: str, request: Request) -> Response:
    exports = _exports(request)
    job = exports.job(job_id, _owner(request))
    if job.status in (Status.ACCEPTED, Status.IN_PROGRESS):
        return Response(status_code=202, headers={"X-Progress": progress(job), "Retry-After": str(RETRY_AFTER_S)})
    if job.status is Status.FAILED:
        raise FhirError(500, f"the export failed: {job.error}", code="exception")
    expires = (job.finished or job.created) / 1_000_000 + exports.limits.retention_hours * 3600
    secured = services(request).settings.auth != "none"
    body = orjson.dumps(manifest(job, exports.files(job.id), fhir_base(request), requires_access_token=secured))
    return Response(body, 200, media_type="application/json", headers={"Expires": formatdate(expires, usegmt=True)})


@router.delete(
    "/$export-status/{job_id}", summary="cancel a bulk export and delete its files", responses=FHIR_RESPONSES
)
def export_cancel(job_id: str, request: Request) -> Response:
    _exports(request).cancel(job_id, _owner(request))
    outcome = operation_outcome(f"export {job_id} cancelled; its files are deleted", severity="information")
    return render(outcome, 202)


@router.get(
    "/$export-file/{job_id}/{file_name}",
    summary="a bulk export file (NDJSON)",
    responses={200: {"content": {NDJSON: {}}, "description": "One resource per line"}, **FHIR_RESPONSES},
)
def export_file(job_id: str, file_name: str, request: Request) -> Response:
    number = file_name.removesuffix(".ndjson")
    if not number.isdigit():
        raise FhirError(404, f"export {job_id} has no file {file_name!r}", code="not-found")
    found, chunks = _exports(request).download(job_id, int(number), _owner(request))
    require(request, reads([found.res_type]))
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in chunks),
        media_type=NDJSON,
        headers={"Content-Length": str(found.size)},
    )
