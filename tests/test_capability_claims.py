"""Every claim of the CapabilityStatement, checked against the live app (R4 capabilitystatement.html).

The statement is generated from the routes (api.capabilities); this test reads it and, for each claim,
makes a request that exercises it and must succeed; for what is not claimed (other operations, other
search parameters, other patch formats), a request that must be refused. A claim without an exercise
here fails the test, so a route added later cannot claim something untested.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.spec.registry import search_parameters

SYSTEM = "urn:oid:1.2.3.4"
# The types whose every claimed search parameter and modifier is tried (the ones fhir-bridge is about).
SEARCHED_TYPES = ("Patient", "ImagingStudy", "Observation", "DiagnosticReport", "Condition", "Endpoint", "Device")
# Operations of the R4 specification this server does not claim: they must be refused.
UNCLAIMED_OPERATIONS = ("$lastn", "$match", "$document", "$expand", "$graphql", "$convert")


@pytest.fixture
def statement(client: TestClient) -> dict[str, Any]:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    return response.json()


def _resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def _ok(response) -> None:  # type: ignore[no-untyped-def]
    assert 200 <= response.status_code < 300, f"{response.request.method} {response.request.url}: {response.text}"


class Store:
    """A few resources for the exercises."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.patient = self.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": "a"}]})

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(f"/fhir/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text
        return response.json()

    @property
    def url(self) -> str:
        return f"/fhir/Patient/{self.patient['id']}"


# type-level interactions: each exercised on Patient
TYPE_EXERCISES: dict[str, Callable[[Store], Any]] = {
    "read": lambda s: s.client.get(s.url),
    "vread": lambda s: s.client.get(f"{s.url}/_history/1"),
    "update": lambda s: s.client.put(s.url, json=dict(s.patient, active=True)),
    "patch": lambda s: s.client.patch(s.url, json={"gender": "other"}),
    "delete": lambda s: s.client.delete(f"/fhir/Patient/{s.create({'resourceType': 'Patient'})['id']}"),
    "history-instance": lambda s: s.client.get(f"{s.url}/_history"),
    "history-type": lambda s: s.client.get("/fhir/Patient/_history"),
    "create": lambda s: s.client.post("/fhir/Patient", json={"resourceType": "Patient"}),
    "search-type": lambda s: s.client.get("/fhir/Patient", params={"identifier": f"{SYSTEM}|a"}),
}
SYSTEM_EXERCISES: dict[str, Callable[[Store], Any]] = {
    "transaction": lambda s: s.client.post(
        "/fhir",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
        },
    ),
    "batch": lambda s: s.client.post(
        "/fhir",
        json={
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": s.url[len("/fhir/") :]}}],
        },
    ),
    "search-system": lambda s: s.client.get("/fhir", params={"_type": "Patient"}),
    "history-system": lambda s: s.client.get("/fhir/_history"),
}


def test_every_claimed_interaction_succeeds(client: TestClient, statement: dict[str, Any]) -> None:
    store = Store(client)
    rest = statement["rest"][0]
    for resource in rest["resource"]:
        claimed = [i["code"] for i in resource["interaction"]]
        assert set(claimed) <= set(TYPE_EXERCISES), (
            f"{resource['type']}: no exercise for {set(claimed) - set(TYPE_EXERCISES)}"
        )
    patient = _resources(statement)["Patient"]
    for code in (i["code"] for i in patient["interaction"]):
        _ok(TYPE_EXERCISES[code](store))
    for code in (i["code"] for i in rest["interaction"]):
        assert code in SYSTEM_EXERCISES, code
        response = SYSTEM_EXERCISES[code](store)
        _ok(response)
        if code in ("transaction", "batch"):
            assert all(e["response"]["status"][0] == "2" for e in response.json()["entry"])


def test_the_conditional_and_version_claims_hold(client: TestClient, statement: dict[str, Any]) -> None:
    """conditionalRead full-support, conditionalCreate/Update, conditionalDelete single, updateCreate,
    versioning versioned-update, referencePolicy enforced (the default setting)."""
    store = Store(client)
    for resource in _resources(statement).values():
        if resource["type"] == "AuditEvent":
            continue  # the audit trail: see test_the_audit_trail_claims_only_what_its_routes_serve
        assert resource["conditionalRead"] == "full-support"
        assert resource["conditionalCreate"] is resource["conditionalUpdate"] is resource["updateCreate"] is True
        assert resource["conditionalDelete"] == "single"
        assert resource["versioning"] == "versioned-update"
        assert set(resource["referencePolicy"]) == {"literal", "local", "enforced"}
    read = client.get(store.url)
    assert client.get(store.url, headers={"If-None-Match": read.headers["etag"]}).status_code == 304
    assert client.get(store.url, headers={"If-Modified-Since": formatdate(usegmt=True)}).status_code == 304
    assert client.get(store.url, headers={"If-None-Match": 'W/"99"'}).status_code == 200
    criteria = {"If-None-Exist": f"identifier={SYSTEM}|a"}
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=criteria).status_code == 200
    assert client.put(f"/fhir/Patient?identifier={SYSTEM}|b", json={"resourceType": "Patient"}).status_code == 201
    store.create({"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": "a"}]})
    assert client.delete(f"/fhir/Patient?identifier={SYSTEM}|a").status_code == 412  # single: two match
    assert client.put("/fhir/Patient/chosen-id", json={"resourceType": "Patient", "id": "chosen-id"}).status_code == 201
    stale = client.put(store.url, json=store.patient, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    dangling = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/nobody"},
    }
    assert client.post("/fhir/Observation", json=dangling).status_code == 422


def test_every_claimed_patch_format_patches_and_others_are_refused(
    client: TestClient, statement: dict[str, Any]
) -> None:
    store = Store(client)
    bodies = {
        "application/json-patch+json": [{"op": "add", "path": "/active", "value": True}],
        "application/merge-patch+json": {"active": False},
        "application/fhir+json": {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "delete"},
                        {"name": "path", "valueString": "Patient.active"},
                    ],
                }
            ],
        },
    }
    assert statement["patchFormat"]
    for media_type in statement["patchFormat"]:
        response = client.patch(store.url, content=json.dumps(bodies[media_type]), headers={"Content-Type": media_type})
        _ok(response)
    refused = client.patch(store.url, content="<diff/>", headers={"Content-Type": "application/xml-patch+xml"})
    assert refused.status_code == 415


def _value(parameter: Any) -> str:
    if parameter.type == "composite":
        second = parameter.components[1][0]
        return "x$" + {"quantity": "1", "date": "2020", "token": "y", "string": "y", "reference": "y"}[second]
    return {
        "token": "x",
        "string": "x",
        "date": "2020",
        "reference": "x",
        "uri": "http://x",
        "number": "1",
        "quantity": "1",
    }[parameter.type]


MODIFIER_VALUES = {
    "missing": "true",
    "of-type": "urn:x|MR|1",
    "identifier": "urn:x|1",
    "below": "http://x",
    "above": "http://x/y",
}


def test_every_claimed_search_parameter_and_modifier_is_accepted_strictly(
    client: TestClient, statement: dict[str, Any]
) -> None:
    """Under Prefer: handling=strict a search parameter the server does not support is a 400: each claimed
    one (with each claimed modifier) must be a 200, and each parameter of the spec it leaves out a 400."""
    strict = {"Prefer": "handling=strict"}
    resources = _resources(statement)
    for resource_type in SEARCHED_TYPES:
        known = search_parameters(resource_type)
        claimed = {p["name"]: p for p in resources[resource_type]["searchParam"]}
        for name, entry in claimed.items():
            value = _value(known[name])
            response = client.get(f"/fhir/{resource_type}", params={name: value}, headers=strict)
            assert response.status_code == 200, (resource_type, name, response.text)
            modifiers = entry.get("documentation", "").removeprefix("Modifiers: ").split(", ")
            for modifier in (m.lstrip(":") for m in modifiers if m):
                found = client.get(
                    f"/fhir/{resource_type}",
                    params={f"{name}:{modifier}": MODIFIER_VALUES.get(modifier, value)},
                    headers=strict,
                )
                assert found.status_code == 200, (resource_type, name, modifier, found.text)
        for name in set(known) - set(claimed):
            refused = client.get(
                f"/fhir/{resource_type}",
                params={name: _value(known[name]) if known[name].type in ("token", "string") else "x"},
                headers=strict,
            )
            assert refused.status_code == 400, (resource_type, name)


def test_every_claimed_operation_works_and_others_are_404(client: TestClient, statement: dict[str, Any], app) -> None:  # type: ignore[no-untyped-def]
    store = Store(client)
    group = store.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{store.patient['id']}"}}],
        }
    )
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "urn:x", "code": "t"}]}}],
    }
    async_export = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    instances = {"Patient": store.patient["id"], "Group": group["id"]}

    def exercise(where: str | None, name: str) -> Any:
        base = "/fhir" if where is None else f"/fhir/{where}"
        instance = f"{base}/{instances[where]}" if where in instances else None
        if name == "export":
            return client.get(f"{instance if where == 'Group' else base}/$export", headers=async_export)
        if name == "meta":
            return client.get(f"{base}/$meta")
        if name == "validate":
            return client.post(f"{base}/$validate", json={"resourceType": where})
        if name in ("meta-add", "meta-delete"):
            assert instance is not None
            return client.post(f"{instance}/${name}", json=parameters)
        if name == "everything":
            return client.get(f"{instance}/$everything")
        raise AssertionError(f"no exercise for the claimed operation {name} on {where}")

    try:
        for operation in statement["rest"][0]["operation"]:
            _ok(exercise(None, operation["name"]))
        for resource_type, resource in _resources(statement).items():
            claimed = {o["name"] for o in resource.get("operation", [])}
            for name in claimed:
                if name in ("meta-add", "meta-delete", "everything") and resource_type not in instances:
                    continue  # exercised on the types that have an instance here
                _ok(exercise(resource_type, name))
            if resource_type in ("Patient", "Observation", "ValueSet", "Composition"):
                for unclaimed in (op for op in UNCLAIMED_OPERATIONS if op[1:] not in claimed):
                    assert client.get(f"/fhir/{resource_type}/{unclaimed}").status_code == 404, (
                        resource_type,
                        unclaimed,
                    )
        assert {o["name"] for o in _resources(statement)["Patient"]["operation"]} >= {
            "meta-add",
            "meta-delete",
            "everything",
        }
    finally:
        app.state.services.bulk_exports.worker.stop()


def test_the_audit_trail_claims_only_what_its_routes_serve(client: TestClient, statement: dict[str, Any]) -> None:
    """AuditEvent is served by the audit trail's own routes: read and search with its own parameters;
    every other interaction is refused and is not claimed."""
    audit = _resources(statement)["AuditEvent"]
    assert [i["code"] for i in audit["interaction"]] == ["search-type", "read"]
    assert "operation" not in audit and audit["conditionalRead"] == "not-supported"
    Store(client)  # some requests, so that the trail has records
    found = client.get("/fhir/AuditEvent", params={"_count": 1})
    _ok(found)
    record = found.json()["entry"][0]["resource"]["id"]
    _ok(client.get(f"/fhir/AuditEvent/{record}"))
    for parameter in audit["searchParam"]:
        value = "2020" if parameter["type"] == "date" else "0" if parameter["name"] == "outcome" else "x"
        _ok(client.get("/fhir/AuditEvent", params={parameter["name"]: value}))
    assert client.get("/fhir/AuditEvent", params={"patient": "x"}).status_code == 400  # not claimed
    assert client.post("/fhir/AuditEvent", json={"resourceType": "AuditEvent"}).status_code == 405
    assert client.delete(f"/fhir/AuditEvent/{record}").status_code == 405
    assert client.get(f"/fhir/AuditEvent/{record}/_history").status_code in (404, 405)
