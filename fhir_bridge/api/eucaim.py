"""EUCAIM federated search routes, outside the FHIR base: the EUCAIM search API and the Beacon v2.

``GET /eucaim/search`` answers Samply Focus's ``eucaim_api`` backend (point its ENDPOINT_URL here);
``/eucaim/beacon`` answers its ``eucaim_beacon`` backend (ENDPOINT_URL ``…/eucaim/beacon``: Focus
POSTs ``{ENDPOINT_URL}/collections``). Counts need the federated-search scope and are audited; the
Beacon's informational endpoints are public (they describe the service, not the data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fhir_bridge.api.access import EUCAIM, EUCAIM_BEACON, annotate
from fhir_bridge.api.catalogue import catalogue_location
from fhir_bridge.api.context import services
from fhir_bridge.eucaim import beacon
from fhir_bridge.eucaim.criteria import FilterError, canonical, from_api_query, from_beacon_filters
from fhir_bridge.eucaim.federated import FederatedSearch, totals
from fhir_bridge.version import package_version

SEARCH = f"{EUCAIM}/search"
BEACON = EUCAIM_BEACON  # its informational endpoints are public (api/access.py EUCAIM_PUBLIC)
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter()


def _search(request: Request) -> FederatedSearch:
    return services(request).federated_search


def _about(request: Request) -> beacon.BeaconDescription:
    settings = services(request).settings
    config = services(request).catalogue_config
    root = catalogue_location(request).catalogue_url.removesuffix("/catalogue")
    beacon_id = settings.eucaim_beacon_id or ".".join(reversed((urlsplit(root).hostname or "localhost").split(".")))
    return beacon.BeaconDescription(
        beacon_id=beacon_id,
        name=f"{config.publisher_name} EUCAIM beacon",
        description=config.description,
        environment=settings.eucaim_environment,
        organization=config.publisher_name,
        organization_url=config.publisher_url or root,
        version=package_version(),
        root_url=f"{root}{BEACON}",
    )


@router.get(SEARCH, summary="Subjects and studies per dataset for EUCAIM federated search (Focus eucaim_api)")
def search(request: Request) -> JSONResponse:
    """``?gender=male&diagnosis=SNOMEDCT399068003&modality=MR&bodyPart=breast&manufacturer=Philips``, each
    at most once, ANDed; values as Focus sends them (see ``/eucaim/beacon/filtering_terms`` for the concepts).
    Datasets whose counts rest on fewer individuals than the threshold are left out."""
    finder = _search(request)
    seq, concepts = finder.snapshot()
    criteria = from_api_query(list(request.query_params.multi_items()), concepts)
    found = finder.collections(criteria, concepts, seq)
    body = {"collections": [c.as_json() for c in found], "total": totals(found)}
    return JSONResponse(body, headers=NO_STORE)


# The Beacon's self-description: path below /eucaim/beacon -> (document, summary).
_DESCRIPTIONS: dict[str, tuple[Callable[[beacon.BeaconDescription], dict[str, Any]], str]] = {
    "": (beacon.info, "Beacon v2 information (as /info)"),
    "/info": (beacon.info, "Beacon v2 information"),
    "/service-info": (beacon.service_info, "GA4GH service-info of the Beacon"),
    "/configuration": (beacon.configuration, "Beacon v2 configuration"),
    "/map": (beacon.beacon_map, "Beacon v2 map"),
    "/entry_types": (beacon.entry_types, "Beacon v2 entry types"),
}


def _describing(document: Callable[[beacon.BeaconDescription], dict[str, Any]]) -> Callable[[Request], dict[str, Any]]:
    def describe(request: Request) -> dict[str, Any]:
        return document(_about(request))

    return describe


for _suffix, (_document, _summary) in _DESCRIPTIONS.items():
    router.add_api_route(
        f"{BEACON}{_suffix}",
        _describing(_document),
        methods=["GET"],
        summary=_summary,
        name=f"beacon{_suffix.replace('/', '_').replace('-', '_') or '_root'}",
    )


@router.get(f"{BEACON}/filtering_terms", summary="The EUCAIM HyperOntology filters this Beacon answers")
def filtering_terms(request: Request) -> dict[str, Any]:
    _, concepts = _search(request).snapshot()
    return beacon.filtering_terms(_about(request), concepts)


@router.get(f"{BEACON}/collections", summary="Beacon v2 collections (datasets) with counts, GET form")
def collections_get(request: Request) -> JSONResponse:
    """``?filters=EUCAIM:COM1001366,EUCAIM:IMG1000038&skip=0&limit=10&requestedGranularity=record``."""
    parameters = request.query_params
    raw = [f.strip() for value in parameters.getlist("filters") for f in value.split(",") if f.strip()]
    query: dict[str, Any] = {"filters": raw or None}
    for name in ("skip", "limit"):
        if name in parameters:
            query["pagination"] = {**query.get("pagination", {}), name: parameters[name]}
    if "requestedGranularity" in parameters:
        query["requestedGranularity"] = parameters["requestedGranularity"]
    return _collections(request, {"meta": {"apiVersion": beacon.API_VERSION}, "query": query})


@router.post(f"{BEACON}/collections", summary="Beacon v2 collections (datasets) with counts (Focus eucaim_beacon)")
async def collections_post(request: Request) -> JSONResponse:
    """A Beacon request body; ``query.filters`` are EUCAIM HyperOntology ids (``EUCAIM:CLIN1000075``), ANDed."""
    body = await request.body()
    try:
        document = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as problem:
        return _refuse(request, beacon.Request(), f"the request body is not JSON: {problem}")
    if not isinstance(document, dict):
        return _refuse(request, beacon.Request(), "the request body must be a JSON object (a Beacon request)")
    return _collections(request, document)


def _beacon_request(document: dict[str, Any]) -> tuple[beacon.Request, object]:
    """The pagination, granularity and test mode asked for, and the raw filters; ValueError when malformed."""
    query = document.get("query") or {}
    if not isinstance(query, dict):
        raise ValueError("query must be an object")
    pagination = query.get("pagination") or {}
    if not isinstance(pagination, dict):
        raise ValueError("query.pagination must be an object")
    try:
        skip, limit = int(pagination.get("skip", 0)), int(pagination.get("limit", 10))
    except (TypeError, ValueError):
        raise ValueError("query.pagination skip and limit must be whole numbers") from None
    if skip < 0 or limit < 0:
        raise ValueError("query.pagination skip and limit must not be negative")
    granularity = query.get("requestedGranularity", "record")
    if granularity not in beacon.GRANULARITIES:
        raise ValueError(f"requestedGranularity must be one of {', '.join(beacon.GRANULARITIES)}")
    test_mode = query.get("testMode", False)
    if not isinstance(test_mode, bool):
        raise ValueError("query.testMode must be true or false")
    return beacon.Request(skip=skip, limit=limit, granularity=granularity, test_mode=test_mode), query.get("filters")


def _collections(request: Request, document: dict[str, Any]) -> JSONResponse:
    finder = _search(request)
    try:
        asked, filters = _beacon_request(document)
    except ValueError as problem:
        return _refuse(request, beacon.Request(), str(problem))
    seq, concepts = finder.snapshot()
    try:
        criteria, ids = from_beacon_filters(filters, concepts)
    except FilterError as problem:
        return _refuse(request, asked, str(problem))
    asked = beacon.Request(tuple(ids), asked.skip, asked.limit, asked.granularity, asked.test_mode)
    annotate(request, detail=f"criteria: {canonical(criteria) or 'none'}")
    found = finder.collections(criteria, concepts, seq)
    return JSONResponse(beacon.collections(_about(request), asked, found), headers=NO_STORE)


def _refuse(request: Request, asked: beacon.Request, message: str) -> JSONResponse:
    annotate(request, detail=message)
    return JSONResponse(beacon.error(_about(request), asked, 400, message), status_code=400, headers=NO_STORE)
