"""The routes of the FHIR operations ``$validate``, ``$meta``, ``$meta-add``, ``$meta-delete`` and
``Patient/[id]/$everything`` (``interactions.operations``), and ``Patient/[id]/$erase``
(``interactions.erasure``). Included before the REST routes, so that ``Patient/x/$meta`` is the
operation, not a compartment search of a type ``$meta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from fhir_bridge.api.access import annotate, require
from fhir_bridge.api.context import fhir_base, query_parameters, read_body, services
from fhir_bridge.api.fhir import FHIR_RESPONSES, FhirJsonResponse, json_body
from fhir_bridge.api.rendering import Presentation, presentation, render, require_json_body
from fhir_bridge.interactions.operations import FhirOperations
from fhir_bridge.security.policy import validate_needs
from fhir_bridge.spec.validation import parse_json


def _body(description: str, *, required: bool) -> dict[str, Any]:
    """The OpenAPI request body of an operation: FHIR JSON."""
    schema = {"type": "object", "description": description}
    return {"requestBody": {"required": required, "content": {"application/fhir+json": {"schema": schema}}}}


PARAMETERS_BODY = _body("A Parameters resource", required=True)
RESOURCE_BODY = _body("The resource, or a Parameters resource (resource, mode, profile)", required=False)
router = APIRouter(default_response_class=FhirJsonResponse)


def _operations(request: Request) -> FhirOperations:
    return FhirOperations(services(request).interactions)


async def _optional_body(request: Request) -> Any:
    body = await read_body(request)
    if not body.strip():
        return None
    require_json_body(request)
    return parse_json(body)


def _validate(request: Request, resource_type: str, resource_id: str | None, body: Any, view: Presentation) -> Response:
    operations = _operations(request)
    asked = operations.validate_input(resource_type, body, query_parameters(request))
    require(request, validate_needs(resource_type, asked.mode))  # a mode makes the write in a dry run
    return render(operations.validate(resource_type, resource_id, asked), 200, view)


@router.post(
    "/{resource_type}/$validate",
    summary="$validate a resource (mode create, or none)",
    openapi_extra=RESOURCE_BODY,
    responses=FHIR_RESPONSES,
)
def validate_type(
    resource_type: str,
    request: Request,
    body: Any = Depends(_optional_body),
    view: Presentation = Depends(presentation),
) -> Response:
    return _validate(request, resource_type, None, body, view)


@router.post(
    "/{resource_type}/{resource_id}/$validate",
    summary="$validate against an existing resource (mode update or delete)",
    openapi_extra=RESOURCE_BODY,
    responses=FHIR_RESPONSES,
)
def validate_instance(
    resource_type: str,
    resource_id: str,
    request: Request,
    body: Any = Depends(_optional_body),
    view: Presentation = Depends(presentation),
) -> Response:
    return _validate(request, resource_type, resource_id, body, view)


@router.get("/$meta", summary="$meta: tags, security labels and profiles in use", responses=FHIR_RESPONSES)
def meta_system(request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_operations(request).meta(None, None), 200, view)


@router.get("/{resource_type}/$meta", summary="$meta of a type", responses=FHIR_RESPONSES)
def meta_type(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_operations(request).meta(resource_type, None), 200, view)


@router.get("/{resource_type}/{resource_id}/$meta", summary="$meta of a resource", responses=FHIR_RESPONSES)
def meta_instance(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    return render(_operations(request).meta(resource_type, resource_id), 200, view)


@router.get(
    "/{resource_type}/{resource_id}/_history/{version_id}/$meta",
    summary="$meta of a version",
    responses=FHIR_RESPONSES,
)
def meta_version(
    resource_type: str, resource_id: str, version_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    return render(_operations(request).meta(resource_type, resource_id, version_id), 200, view)


def _meta_change(add: bool) -> Callable[..., Response]:
    """The route of ``$meta-add`` (``add``) or ``$meta-delete``: a new version with meta changed."""

    def change(
        resource_type: str,
        resource_id: str,
        request: Request,
        body: Any = Depends(json_body),
        view: Presentation = Depends(presentation),
    ) -> Response:
        return render(_operations(request).change_meta(resource_type, resource_id, body, add=add), 200, view)

    return change


for _name, _add, _what in (("meta-add", True, "add"), ("meta-delete", False, "remove")):
    router.add_api_route(
        f"/{{resource_type}}/{{resource_id}}/${_name}",
        _meta_change(_add),
        methods=["POST"],
        name=_name.replace("-", "_"),
        summary=f"${_name}: {_what} tags, security labels, profiles (a new version)",
        openapi_extra=PARAMETERS_BODY,
        responses=FHIR_RESPONSES,
    )


@router.post(
    "/Patient/{patient_id}/$erase",
    summary="$erase: the Patient and its compartment, every version, for good (scope system/Patient.erase)",
    responses=FHIR_RESPONSES,
)
def erase(patient_id: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    report = services(request).erasure.erase_patient(patient_id)
    annotate(request, detail=report.summary())
    counts = [
        ("resources", report.resources),
        ("versions", report.versions),
        ("indexRows", report.index_rows),
        ("bulkExports", report.exports),
    ]
    parameters = [{"name": name, "valueInteger": value} for name, value in counts]
    parameters += [
        {"name": "erased", "part": [{"name": "type", "valueCode": t}, {"name": "count", "valueInteger": n}]}
        for t, n in sorted(report.by_type.items())
    ]
    parameters += [
        {"name": "keptReferrer", "part": [{"name": "type", "valueCode": t}, {"name": "count", "valueInteger": n}]}
        for t, n in sorted(report.kept_referrers.items())
    ]
    return render({"resourceType": "Parameters", "parameter": parameters}, 200, view)


@router.get(
    "/Patient/{patient_id}/$everything",
    summary="$everything: the Patient and its compartment, paged (_since, _type, _count)",
    responses=FHIR_RESPONSES,
)
def everything(patient_id: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    bundle = _operations(request).everything(patient_id, query_parameters(request), fhir_base(request))
    return render(bundle, 200, view)
