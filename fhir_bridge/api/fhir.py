"""The FHIR REST routes: each one reads the HTTP request, calls one interaction, renders the result."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.access import annotate, audit_bundle_entries, audit_search, require
from fhir_bridge.api.context import fhir_base, query_parameters, read_body, read_by_id, services
from fhir_bridge.api.media_types import essence
from fhir_bridge.api.placement import SearchPlacement
from fhir_bridge.api.rendering import (
    Presentation,
    head_response,
    presentation,
    presentation_of,
    render,
    render_write,
    require_json_body,
    version_headers,
)
from fhir_bridge.api.routing import request_alone
from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.patching import PATCH_FORMATS, Patch, patch_of
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.interactions.transaction import BundleProcessor
from fhir_bridge.security.policy import bundle_needs, search_needs
from fhir_bridge.spec.validation import parse_json

JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/fhir+json": {"schema": {"type": "object", "description": "A FHIR R4 resource"}}},
    }
}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/fhir+json": {"schema": {"type": "object", "description": "A FHIRPath Patch (Parameters)"}},
        },
    }
}
FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "An OperationOutcome saying what is wrong and where",
        "content": {"application/fhir+json": {}},
    },
}
# A write answers 201 when it creates (also update and conditional update), 200 otherwise (also a create
# whose If-None-Exist matches).
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done: the resource (see Prefer)", "content": {"application/fhir+json": {}}},
    201: {"description": "Created: the resource (see Prefer)", "content": {"application/fhir+json": {}}},
    **FHIR_RESPONSES,
}


class FhirJsonResponse(JSONResponse):
    """What the OpenAPI document says the FHIR routes answer in (they build their responses themselves)."""

    media_type = "application/fhir+json"


def _interactions(request: Request) -> FhirInteractions:
    return services(request).interactions


async def json_body(request: Request) -> Any:
    require_json_body(request)
    return parse_json(await read_body(request))


async def _patch_body(request: Request) -> Patch:
    """The patch of a PATCH request, by its media type (``interactions.patching``: JSON Patch, JSON Merge
    Patch, FHIRPath Patch); 415 before the body is read for other media types."""
    content_type = essence(request.headers.get("content-type"))
    if content_type not in (*PATCH_FORMATS, "application/json", "application/json+fhir"):
        patch_of(content_type, None)  # the 415 naming what PATCH takes
    return patch_of(content_type, parse_json(await read_body(request)))


def _not_an_operation(segment: str) -> None:
    """``[type]/$op``, ``[type]/[id]/$op`` of an operation that no route serves: 404, not a read or a search."""
    if segment.startswith("$"):
        raise FhirError(404, f"the operation {segment} is not supported here", code="not-supported")


async def _form_parameters(request: Request) -> list[tuple[str, str]]:
    """Parameters of a POST _search body (application/x-www-form-urlencoded)."""
    content_type = essence(request.headers.get("content-type"))
    body = await read_body(request)
    if body and content_type != "application/x-www-form-urlencoded":
        raise FhirError(415, "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported")
    parameters = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    audit_search(request, parameters)  # the trail records a POSTed search like a GET one
    return parameters


# conditionalRead of the CapabilityStatement: _not_modified honours If-None-Match and If-Modified-Since.
CONDITIONAL_READ = "full-support"


def _not_modified(request: Request, headers: dict[str, str], last_updated: int) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:  # weak comparison (RFC 9110): "3", W/"3" and a bare 3 all match version 3
        version = headers["ETag"][3:-1]
        tags = [tag.strip().removeprefix("W/").strip('"') for tag in if_none_match.split(",")]
        return version in tags or "*" in tags
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return last_updated // 1_000_000 <= int(since.timestamp())
    return False


def path_parameters(*names: str) -> dict[str, Any]:
    """The OpenAPI description of string path parameters that the route reads from ``request.path_params``
    (as FastAPI would describe them were they arguments of the route)."""
    described = ({"title": name.replace("_", " ").title(), "type": "string"} for name in names)
    return {
        "parameters": [
            {"in": "path", "name": name, "required": True, "schema": schema}
            for name, schema in zip(names, described, strict=True)
        ]
    }


router = APIRouter(default_response_class=FhirJsonResponse)


@router.post("/", summary="batch or transaction Bundle", openapi_extra=JSON_BODY, responses=FHIR_RESPONSES)
def bundle(request: Request, body: Any = Depends(json_body), view: Presentation = Depends(presentation)) -> Response:
    require(request, bundle_needs(body))
    if isinstance(body, dict) and body.get("type") in ("batch", "transaction"):
        annotate(request, interaction=body["type"])
    processor = BundleProcessor(_interactions(request), strict=view.strict)
    try:
        answer = processor.process(body, fhir_base(request), view.prefer_return == "representation")
    except FhirError as error:
        audit_bundle_entries(request, body, None, error)
        raise
    audit_bundle_entries(request, body, answer, None)
    return render(answer, 200, view)


@router.get("/", summary="search all types", responses=FHIR_RESPONSES)
def search_system(request: Request, view: Presentation = Depends(presentation)) -> Response:
    bundle = _interactions(request).search(None, query_parameters(request), fhir_base(request), view.strict)
    return head_response(request, render(bundle, 200, view))


@router.post("/_search", summary="search all types (form-encoded parameters)", responses=FHIR_RESPONSES)
async def search_system_post(request: Request, view: Presentation = Depends(presentation)) -> Response:
    parameters = query_parameters(request) + await _form_parameters(request)
    require(request, search_needs(None, parameters))
    bundle = await run_in_threadpool(_interactions(request).search, None, parameters, fhir_base(request), view.strict)
    return render(bundle, 200, view)


@router.get("/_history", summary="history of all resources", responses=FHIR_RESPONSES)
def history_system(request: Request, view: Presentation = Depends(presentation)) -> Response:
    bundle = _interactions(request).history(None, None, query_parameters(request), fhir_base(request))
    return head_response(request, render(bundle, 200, view))


@router.get(
    "/{resource_type}", summary="search", responses=FHIR_RESPONSES, openapi_extra=path_parameters("resource_type")
)
@request_alone
async def search_type(request: Request) -> Response:
    # parameters from the request itself, as ``read`` takes them (FastAPI's dependency solving costs);
    # on the event loop or a thread, whichever costs least (``api.placement``)
    resource_type = request.path_params["resource_type"]
    view = presentation_of(request)
    _not_an_operation(resource_type)
    interactions, base = _interactions(request), fhir_base(request)

    def search(resource_type: str, parameters: list[tuple[str, str]]) -> dict[str, Any]:
        return interactions.search(resource_type, parameters, base, view.strict)

    placement: SearchPlacement = request.app.state.search_placement
    bundle = await placement.run(search, resource_type, query_parameters(request))
    return head_response(request, render(bundle, 200, view))


@router.post("/{resource_type}/_search", summary="search (form-encoded parameters)", responses=FHIR_RESPONSES)
async def search_type_post(
    resource_type: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    parameters = query_parameters(request) + await _form_parameters(request)
    require(request, search_needs(resource_type, parameters))
    bundle = await run_in_threadpool(
        _interactions(request).search, resource_type, parameters, fhir_base(request), view.strict
    )
    return render(bundle, 200, view)


@router.get("/{resource_type}/_history", summary="history of a type", responses=FHIR_RESPONSES)
def history_type(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    bundle = _interactions(request).history(resource_type, None, query_parameters(request), fhir_base(request))
    return head_response(request, render(bundle, 200, view))


@router.post(
    "/{resource_type}",
    summary="create (conditional with If-None-Exist, or with search parameters in the URL)",
    status_code=201,
    openapi_extra=JSON_BODY,
    responses=WRITE_RESPONSES,
)
def create(
    resource_type: str, request: Request, body: Any = Depends(json_body), view: Presentation = Depends(presentation)
) -> Response:
    if_none_exist = request.headers.get("if-none-exist")
    if criteria := query_parameters(request):  # POST Type?criteria (fhirpy's create/get_or_create, Aidbox)
        if if_none_exist is not None:
            raise FhirError(
                400,
                "a conditional create takes its criteria in If-None-Exist or in the URL, not in both",
                code="invalid",
                expression=[name for name, _ in criteria],
            )
        if_none_exist = urlencode(criteria)
    outcome = _interactions(request).create(resource_type, body, if_none_exist, strict=view.strict)
    return render_write(outcome, view, fhir_base(request))


@router.put("/{resource_type}", summary="conditional update", openapi_extra=JSON_BODY, responses=WRITE_RESPONSES)
def conditional_update(
    resource_type: str, request: Request, body: Any = Depends(json_body), view: Presentation = Depends(presentation)
) -> Response:
    outcome = _interactions(request).conditional_update(
        resource_type, request.url.query, body, request.headers.get("if-match"), strict=view.strict
    )
    return render_write(outcome, view, fhir_base(request))


@router.patch(
    "/{resource_type}",
    summary="conditional patch (JSON Patch, JSON Merge Patch, FHIRPath Patch)",
    openapi_extra=PATCH_BODY,
    responses=FHIR_RESPONSES,
)
def conditional_patch(
    resource_type: str, request: Request, body: Patch = Depends(_patch_body), view: Presentation = Depends(presentation)
) -> Response:
    outcome = _interactions(request).conditional_patch(
        resource_type, request.url.query, body, request.headers.get("if-match")
    )
    return render_write(outcome, view, fhir_base(request))


@router.delete("/{resource_type}", summary="conditional delete", responses=FHIR_RESPONSES)
def conditional_delete(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render_write(
        _interactions(request).conditional_delete(resource_type, request.url.query), view, fhir_base(request)
    )


@router.get(
    "/{resource_type}/{resource_id}",
    summary="read",
    responses=FHIR_RESPONSES,
    openapi_extra=path_parameters("resource_type", "resource_id"),
)
@request_alone
async def read(request: Request) -> Response:
    # The busiest route takes its parameters from the request itself, and is served as it is
    # (``api.routing.PlainRoute``): FastAPI's request handler cost a third of a read's CPU.
    resource_type, resource_id = request.path_params["resource_type"], request.path_params["resource_id"]
    view = presentation_of(request)
    _not_an_operation(resource_id)
    stored = await read_by_id(request, _interactions(request).read, resource_type, resource_id)
    headers = version_headers(stored)
    if _not_modified(request, headers, stored.last_updated):
        return Response(status_code=304, headers=headers)
    return head_response(request, render(stored.content.encode(), 200, view, headers))  # type: ignore[union-attr]


@router.put(
    "/{resource_type}/{resource_id}",
    summary="update (or create with this id)",
    openapi_extra=JSON_BODY,
    responses=WRITE_RESPONSES,
)
def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    body: Any = Depends(json_body),
    view: Presentation = Depends(presentation),
) -> Response:
    outcome = _interactions(request).update(
        resource_type, resource_id, body, request.headers.get("if-match"), strict=view.strict
    )
    return render_write(outcome, view, fhir_base(request))


@router.patch(
    "/{resource_type}/{resource_id}",
    summary="patch (JSON Patch, JSON Merge Patch, FHIRPath Patch)",
    openapi_extra=PATCH_BODY,
    responses=FHIR_RESPONSES,
)
def patch(
    resource_type: str,
    resource_id: str,
    request: Request,
    body: Patch = Depends(_patch_body),
    view: Presentation = Depends(presentation),
) -> Response:
    outcome = _interactions(request).patch(resource_type, resource_id, body, request.headers.get("if-match"))
    return render_write(outcome, view, fhir_base(request))


@router.delete("/{resource_type}/{resource_id}", summary="delete", responses=FHIR_RESPONSES)
def delete(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    outcome = _interactions(request).delete(resource_type, resource_id, request.headers.get("if-match"))
    return render_write(outcome, view, fhir_base(request))


@router.get(
    "/{resource_type}/{resource_id}/_history",
    summary="history of a resource",
    responses=FHIR_RESPONSES,
)
def history_instance(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    bundle = _interactions(request).history(resource_type, resource_id, query_parameters(request), fhir_base(request))
    return head_response(request, render(bundle, 200, view))


@router.get(
    "/{compartment_type}/{compartment_id}/{resource_type}",
    summary="compartment search",
    responses=FHIR_RESPONSES,
)
def search_compartment(
    compartment_type: str,
    compartment_id: str,
    resource_type: str,
    request: Request,
    view: Presentation = Depends(presentation),
) -> Response:
    """``Patient/[id]/ImagingStudy``, or ``Patient/[id]/*`` for every type in the compartment."""
    _not_an_operation(resource_type)
    wanted = None if resource_type == "*" else resource_type
    bundle = _interactions(request).search(
        wanted,
        query_parameters(request),
        fhir_base(request),
        view.strict,
        compartment=(compartment_type, compartment_id),
    )
    return head_response(request, render(bundle, 200, view))


@router.get(
    "/{resource_type}/{resource_id}/_history/{version_id}",
    summary="vread",
    responses=FHIR_RESPONSES,
)
async def vread(
    resource_type: str, resource_id: str, version_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    stored = await read_by_id(request, _interactions(request).vread, resource_type, resource_id, version_id)
    headers = version_headers(stored)
    if _not_modified(request, headers, stored.last_updated):
        return Response(status_code=304, headers=headers)
    return head_response(request, render(stored.content.encode(), 200, view, headers))  # type: ignore[union-attr]


# The base URL itself (``/fhir`` as well as ``/fhir/``) answers bundles and system search.
BASE_ROUTES = ((bundle, ["POST"]), (search_system, ["GET", "HEAD"]))

# HEAD on reads, searches and histories (RFC 9110 9.3.2: the GET without its content): the GET routes
# again, for HEAD, in the same order; the OpenAPI document lists the GETs only.
for _endpoint in (
    search_system,
    history_system,
    search_type,
    history_type,
    read,
    history_instance,
    search_compartment,
    vread,
):
    _route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is _endpoint)
    router.add_api_route(_route.path, _endpoint, methods=["HEAD"], include_in_schema=False)

# The restful interactions (CapabilityStatement codes) each route serves: the CapabilityStatement claims
# those of the routes the app has (api.capabilities).
ROUTE_INTERACTIONS = {
    read: ("read",),
    vread: ("vread",),
    update: ("update",),
    patch: ("patch",),
    delete: ("delete",),
    history_instance: ("history-instance",),
    history_type: ("history-type",),
    create: ("create",),
    search_type: ("search-type",),
    bundle: ("transaction", "batch"),
    search_system: ("search-system",),
    history_system: ("history-system",),
}
# Conditional interactions: the route that serves each (CapabilityStatement conditionalCreate, ...).
CONDITIONAL_ROUTES = {"conditionalCreate": create, "conditionalUpdate": conditional_update}
CONDITIONAL_DELETE = conditional_delete  # "single": several matches are a 412 (Transaction.single_match)
