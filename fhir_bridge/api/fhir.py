"""The FHIR REST routes: each one reads the HTTP request, calls one interaction, renders the result."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.access import annotate, require
from fhir_bridge.api.rendering import (
    PATCH_TYPES,
    Presentation,
    presentation,
    render,
    render_write,
    require_json_body,
    version_headers,
)
from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.capability import capability_statement
from fhir_bridge.interactions.server import FhirServer
from fhir_bridge.interactions.transaction import BundleProcessor
from fhir_bridge.interactions.validation import parse_json
from fhir_bridge.security.policy import bundle_needs, search_needs

JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/fhir+json": {"schema": {"type": "object", "description": "A FHIR R4 resource"}}},
    }
}
PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}},
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


STARTED = datetime.now(UTC).isoformat(timespec="seconds")


def _server(request: Request) -> FhirServer:
    return request.app.state.fhir_server


def _base(request: Request) -> str:
    configured = request.app.state.settings.public_base_url
    if configured:
        return configured.rstrip("/")
    # root_path is where this app is mounted (a host app's Mount, or a proxy's --root-path)
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{root}{request.app.state.settings.fhir_path}"


async def _body(request: Request) -> bytes:
    """The request body; its size and pace are limited by ``api.limits`` (413, 408) while it streams."""
    return await request.body()


async def _json_body(request: Request) -> Any:
    require_json_body(request)
    return parse_json(await _body(request))


async def _patch_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in PATCH_TYPES:
        raise FhirError(
            415,
            f"PATCH takes application/json-patch+json, not {content_type or 'no Content-Type'!r}",
            code="not-supported",
        )
    return parse_json(await _body(request))


async def _form_parameters(request: Request) -> list[tuple[str, str]]:
    """Parameters of a POST _search body (application/x-www-form-urlencoded)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _body(request)
    if body and content_type != "application/x-www-form-urlencoded":
        raise FhirError(415, "POST _search takes application/x-www-form-urlencoded parameters", code="not-supported")
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _parameters(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")]


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


router = APIRouter(default_response_class=FhirJsonResponse)


@router.get("/metadata", summary="CapabilityStatement", responses=FHIR_RESPONSES)
def metadata(request: Request, view: Presentation = Depends(presentation)) -> Response:
    secured = request.app.state.settings.auth != "none"
    return render(capability_statement(_base(request), STARTED, secured=secured), 200, view)


@router.post("/", summary="batch or transaction Bundle", openapi_extra=JSON_BODY, responses=FHIR_RESPONSES)
def bundle(request: Request, body: Any = Depends(_json_body), view: Presentation = Depends(presentation)) -> Response:
    require(request, bundle_needs(body))
    if isinstance(body, dict) and body.get("type") in ("batch", "transaction"):
        annotate(request, interaction=body["type"])
    processor = BundleProcessor(_server(request), strict=view.strict)
    return render(processor.process(body, _base(request), view.prefer_return == "representation"), 200, view)


@router.get("/", summary="search all types", responses=FHIR_RESPONSES)
def search_system(request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_server(request).search(None, _parameters(request), _base(request), view.strict), 200, view)


@router.post("/_search", summary="search all types (form-encoded parameters)", responses=FHIR_RESPONSES)
async def search_system_post(request: Request, view: Presentation = Depends(presentation)) -> Response:
    parameters = _parameters(request) + await _form_parameters(request)
    require(request, search_needs(None, parameters))
    bundle = await run_in_threadpool(_server(request).search, None, parameters, _base(request), view.strict)
    return render(bundle, 200, view)


@router.get("/_history", summary="history of all resources", responses=FHIR_RESPONSES)
def history_system(request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_server(request).history(None, None, _parameters(request), _base(request)), 200, view)


@router.get("/{resource_type}", summary="search", responses=FHIR_RESPONSES)
def search_type(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_server(request).search(resource_type, _parameters(request), _base(request), view.strict), 200, view)


@router.post("/{resource_type}/_search", summary="search (form-encoded parameters)", responses=FHIR_RESPONSES)
async def search_type_post(
    resource_type: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    parameters = _parameters(request) + await _form_parameters(request)
    require(request, search_needs(resource_type, parameters))
    bundle = await run_in_threadpool(_server(request).search, resource_type, parameters, _base(request), view.strict)
    return render(bundle, 200, view)


@router.get("/{resource_type}/_history", summary="history of a type", responses=FHIR_RESPONSES)
def history_type(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render(_server(request).history(resource_type, None, _parameters(request), _base(request)), 200, view)


@router.post(
    "/{resource_type}",
    summary="create (conditional with If-None-Exist)",
    status_code=201,
    openapi_extra=JSON_BODY,
    responses=WRITE_RESPONSES,
)
def create(
    resource_type: str, request: Request, body: Any = Depends(_json_body), view: Presentation = Depends(presentation)
) -> Response:
    if unexpected := _parameters(request):
        raise FhirError(
            400,
            "a create takes no URL parameters; send the criteria of a conditional create in If-None-Exist",
            code="not-supported",
            expression=[name for name, _ in unexpected],
        )
    outcome = _server(request).create(resource_type, body, request.headers.get("if-none-exist"), strict=view.strict)
    return render_write(outcome, view, _base(request))


@router.put("/{resource_type}", summary="conditional update", openapi_extra=JSON_BODY, responses=WRITE_RESPONSES)
def conditional_update(
    resource_type: str, request: Request, body: Any = Depends(_json_body), view: Presentation = Depends(presentation)
) -> Response:
    outcome = _server(request).conditional_update(
        resource_type, request.url.query, body, request.headers.get("if-match"), strict=view.strict
    )
    return render_write(outcome, view, _base(request))


@router.patch(
    "/{resource_type}", summary="conditional patch (JSON Patch)", openapi_extra=PATCH_BODY, responses=FHIR_RESPONSES
)
def conditional_patch(
    resource_type: str, request: Request, body: Any = Depends(_patch_body), view: Presentation = Depends(presentation)
) -> Response:
    outcome = _server(request).conditional_patch(
        resource_type, request.url.query, body, request.headers.get("if-match")
    )
    return render_write(outcome, view, _base(request))


@router.delete("/{resource_type}", summary="conditional delete", responses=FHIR_RESPONSES)
def conditional_delete(resource_type: str, request: Request, view: Presentation = Depends(presentation)) -> Response:
    return render_write(_server(request).conditional_delete(resource_type, request.url.query), view, _base(request))


@router.get("/{resource_type}/{resource_id}", summary="read", responses=FHIR_RESPONSES)
def read(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    stored = _server(request).read(resource_type, resource_id)
    headers = version_headers(stored)
    if _not_modified(request, headers, stored.last_updated):
        return Response(status_code=304, headers=headers)
    return render(stored.content.encode(), 200, view, headers)  # type: ignore[union-attr]


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
    body: Any = Depends(_json_body),
    view: Presentation = Depends(presentation),
) -> Response:
    outcome = _server(request).update(
        resource_type, resource_id, body, request.headers.get("if-match"), strict=view.strict
    )
    return render_write(outcome, view, _base(request))


@router.patch(
    "/{resource_type}/{resource_id}", summary="patch (JSON Patch)", openapi_extra=PATCH_BODY, responses=FHIR_RESPONSES
)
def patch(
    resource_type: str,
    resource_id: str,
    request: Request,
    body: Any = Depends(_patch_body),
    view: Presentation = Depends(presentation),
) -> Response:
    outcome = _server(request).patch(resource_type, resource_id, body, request.headers.get("if-match"))
    return render_write(outcome, view, _base(request))


@router.delete("/{resource_type}/{resource_id}", summary="delete", responses=FHIR_RESPONSES)
def delete(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    outcome = _server(request).delete(resource_type, resource_id, request.headers.get("if-match"))
    return render_write(outcome, view, _base(request))


@router.get("/{resource_type}/{resource_id}/_history", summary="history of a resource", responses=FHIR_RESPONSES)
def history_instance(
    resource_type: str, resource_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    return render(_server(request).history(resource_type, resource_id, _parameters(request), _base(request)), 200, view)


@router.get(
    "/{compartment_type}/{compartment_id}/{resource_type}", summary="compartment search", responses=FHIR_RESPONSES
)
def search_compartment(
    compartment_type: str,
    compartment_id: str,
    resource_type: str,
    request: Request,
    view: Presentation = Depends(presentation),
) -> Response:
    """``Patient/[id]/ImagingStudy``, or ``Patient/[id]/*`` for every type in the compartment."""
    wanted = None if resource_type == "*" else resource_type
    bundle = _server(request).search(
        wanted, _parameters(request), _base(request), view.strict, compartment=(compartment_type, compartment_id)
    )
    return render(bundle, 200, view)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", summary="vread", responses=FHIR_RESPONSES)
def vread(
    resource_type: str, resource_id: str, version_id: str, request: Request, view: Presentation = Depends(presentation)
) -> Response:
    stored = _server(request).vread(resource_type, resource_id, version_id)
    headers = version_headers(stored)
    if _not_modified(request, headers, stored.last_updated):
        return Response(status_code=304, headers=headers)
    return render(stored.content.encode(), 200, view, headers)  # type: ignore[union-attr]


# The base URL itself (``/fhir`` as well as ``/fhir/``) answers bundles and system search.
BASE_ROUTES = ((bundle, ["POST"]), (search_system, ["GET"]))
