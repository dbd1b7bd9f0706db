"""Every route, walked with a valid token that lacks the scopes it needs: 401/403, and no data in the body.

The routes are those of the OpenAPI document and those the document leaves out (HEAD, the FHIR base
without its slash, discovery at the root): every APIRoute of the app. A route added later without a
description in ``security.policy`` is refused by default, and this walk catches one that is not.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fhir_bridge.cli import openapi_document
from fhir_bridge.security.clients import ClientRegistry
from tests.security_helpers import ClientKey, bearer, ec_key, headers_for

MRN = "P-WALK-4711"
# Public by design: discovery, the token endpoint, the CapabilityStatement, the catalogue's aggregate
# description, the Beacon's self-description, the API's own documentation, the index of the service and its
# health and readiness checks. They must hold no data either.
PUBLIC = re.compile(
    r"^/(fhir/)?(\.well-known/smart-configuration|auth/(token|jwks))$|^/fhir/metadata$|^/catalogue$"
    r"|^/(healthz|readyz)?$"
    r"|^/eucaim/beacon(/(info|service-info|configuration|map|entry_types|filtering_terms))?$"
    r"|^/(docs|redoc|openapi\.json|docs/oauth2-redirect)$"
)
# The web UI authenticates by its session cookie, not a bearer token: without a session its pages send the
# browser to the login (or say no login is configured); its style sheet, login, callback and logout hold no data.
UI_PAGES = re.compile(r"^/ui(/(ingest|patients|patients/\{patient_id\}|studies/\{study_id\}|catalogue|audit))?$")
UI_OTHER = re.compile(r"^/ui/(static/\{name\}|login|callback|logout)$")
# The routes of export jobs answer 404 for a job of another client (its existence is not revealed).
JOB_ROUTES = re.compile(r"/\$export-(status|file)/")


def _body(method: str, path: str, female: str) -> dict[str, Any]:
    """A request body that would do something on this route, were the token allowed to."""
    patient = {"resourceType": "Patient", "id": female, "gender": "female"}
    if path in ("/fhir/", "/fhir"):
        entry = {"request": {"method": "GET", "url": f"Patient?identifier={MRN}"}}
        return {"json": {"resourceType": "Bundle", "type": "batch", "entry": [entry]}}
    if path.endswith("/_search"):
        return {"data": {"identifier": MRN}}
    if path.endswith(("$export", "$meta-add", "$meta-delete")):
        return {"json": {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Patient"}]}}
    if path == "/ingest/fhir":
        pushed = {**patient, "identifier": [{"system": "urn:oid:1.2.3", "value": "X"}]}
        return {"content": json.dumps(pushed).encode() + b"\n", "headers": {"Content-Type": "application/fhir+ndjson"}}
    if path.startswith("/ingest/"):
        return {"content": b"patient_id,gender\nX,female\n", "headers": {"Content-Type": "text/csv"}}
    if path.startswith("/dicomweb/"):
        return {"content": b"\0" * 132 + b"DICM", "headers": {"Content-Type": "application/dicom"}}
    if path.startswith("/eucaim/"):
        return {"json": {"meta": {"apiVersion": "2.0"}, "query": {}}}
    if method == "PATCH":
        operations = [{"op": "replace", "path": "/gender", "value": "male"}]
        return {"content": json.dumps(operations).encode(), "headers": {"Content-Type": "application/json-patch+json"}}
    return {"json": patient}


def _routes(app: Any) -> list[tuple[str, str]]:
    documented = {(method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item}
    served = {(method, path) for path, route in _served(app.routes) for method in route.methods}
    assert documented <= served  # the document describes served routes
    return sorted(documented | served)


def _served(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, inside included routers too (FastAPI keeps those apart)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((route.path if route.path.startswith(prefix) else prefix + route.path, route))
        elif hasattr(route, "original_router"):
            found += _served(route.original_router.routes, prefix + route.include_context.prefix)
    return found


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)


@pytest.fixture
def walk(secured: TestClient, client_keys: dict[str, ClientKey]) -> dict[str, Any]:
    admin = headers_for(secured, client_keys, "writer")
    patient = {
        "resourceType": "Patient",
        "gender": "female",
        "identifier": [{"system": "urn:example:mrn", "value": MRN}],
    }
    female = secured.post("/fhir/Patient", json=patient, headers=admin).json()["id"]
    study = {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{female}"}}
    assert secured.post("/fhir/ImagingStudy", json=study, headers=admin).status_code == 201
    kick_off = secured.get("/fhir/$export?_type=Patient", headers={**admin, "Prefer": "respond-async"})
    job_id = kick_off.headers["content-location"].rsplit("/", 1)[1]
    # Counts only (no FHIR interaction at all), and a read of one type (for the federated search routes,
    # which the first scope opens): each route is walked with a token that lacks what it needs.
    narrow, reader = ec_key("narrow-1"), ec_key("device-1")
    registry = ClientRegistry(secured.app.state.services.engines)  # type: ignore[attr-defined]
    registry.add("narrow", "system/FederatedSearch.s", jwks=narrow.jwks(), jwks_url=None)
    registry.add("device-reader", "system/Device.r", jwks=reader.jwks(), jwks_url=None)
    values = {
        "resource_type": "Patient",
        "resource_id": female,
        "patient_id": female,
        "compartment_type": "Patient",
        "compartment_id": female,
        "version_id": "1",
        "group_id": "g-1",
        "job_id": job_id,
        "file_name": "1.ndjson",
        "record_id": "1",
        "study": "1.2.3",
        "study_id": female,
        "name": "ui.css",
    }
    return {
        "narrow": bearer(secured, "narrow", narrow, "system/FederatedSearch.s"),
        "device-reader": bearer(secured, "device-reader", reader, "system/Device.r"),
        "values": values,
        "female": female,
    }


def _leaks(answer: Any, female: str) -> bool:
    return MRN in answer.text or female in answer.text


def test_every_route_refuses_a_token_without_the_scopes_it_needs(secured: TestClient, walk: dict) -> None:
    checked = []
    for method, template in _routes(secured.app):
        path = _fill(template, walk["values"])
        if template.endswith("$validate"):  # without a mode it only checks the body (needs no scope): make it a write
            path += "?mode=update" if "{resource_id}" in template else "?mode=create"
        if template == "/ingest/clinical":
            path += "?mapping=patient-demographics"
        options = _body(method, template, walk["female"])
        token = walk["device-reader"] if template.startswith("/eucaim") else walk["narrow"]
        headers = {**token, **options.pop("headers", {}), "Prefer": "respond-async"}
        answer = secured.request(method, path, headers=headers, **options)
        if PUBLIC.match(template) or UI_OTHER.match(template):
            assert not _leaks(answer, walk["female"]), (method, path)
            continue
        if UI_PAGES.match(template):
            assert answer.status_code in {303, 401, 403, 503}, (method, path, answer.status_code)
            assert not _leaks(answer, walk["female"]), (method, path)
            checked.append((method, template))
            continue
        allowed = {401, 403, 404} if JOB_ROUTES.search(template) else {401, 403}
        assert answer.status_code in allowed, (method, path, answer.status_code, answer.text[:300])
        assert not _leaks(answer, walk["female"]), (method, path, answer.text[:300])
        anonymous = secured.request(method, path, headers={"Prefer": "respond-async"}, **options)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        checked.append((method, template))
    assert len(checked) > 50  # the walk reached the FHIR, bulk, DICOMweb, ingest and EUCAIM routes
