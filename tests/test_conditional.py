"""Conditional create, update, patch and delete; conditional create under concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

SYSTEM = "urn:oid:1.2.3.4"


def patient(value: str, **fields: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}], **fields}


def count(client, query: str) -> int:
    return client.get(f"/fhir/Patient?{query}&_total=accurate").json()["total"]


def test_conditional_create_returns_the_existing_match(client):
    criteria = {"If-None-Exist": f"identifier={SYSTEM}|p1"}
    first = client.post("/fhir/Patient", json=patient("p1"), headers=criteria)
    second = client.post("/fhir/Patient", json=patient("p1", gender="male"), headers=criteria)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert "gender" not in second.json()
    assert count(client, f"identifier={SYSTEM}|p1") == 1


def test_conditional_create_with_several_matches_is_412(client):
    client.post("/fhir/Patient", json=patient("twin"))
    client.post("/fhir/Patient", json=patient("twin"))
    response = client.post(
        "/fhir/Patient", json=patient("twin"), headers={"If-None-Exist": f"identifier={SYSTEM}|twin"}
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_with_unknown_parameter_is_400(client):
    response = client.post("/fhir/Patient", json=patient("x"), headers={"If-None-Exist": "shoe-size=42"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["shoe-size"]


def test_conditional_update_creates_then_updates(client):
    url = f"/fhir/Patient?identifier={SYSTEM}|p2"
    created = client.put(url, json=patient("p2", gender="male"))
    assert created.status_code == 201
    updated = client.put(url, json=patient("p2", gender="female"))
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    assert count(client, f"identifier={SYSTEM}|p2") == 1


def test_conditional_update_with_several_matches_is_412(client):
    client.post("/fhir/Patient", json=patient("dup"))
    client.post("/fhir/Patient", json=patient("dup"))
    assert client.put(f"/fhir/Patient?identifier={SYSTEM}|dup", json=patient("dup")).status_code == 412


def test_conditional_update_with_other_id_in_body_is_400(client):
    existing = client.post("/fhir/Patient", json=patient("p3")).json()
    response = client.put(f"/fhir/Patient?identifier={SYSTEM}|p3", json=patient("p3", id="someone-else"))
    assert response.status_code == 400
    assert client.get(f"/fhir/Patient/{existing['id']}").json()["meta"]["versionId"] == "1"


def test_conditional_patch_changes_the_single_match(client):
    client.post("/fhir/Patient", json=patient("p4", gender="male"))
    operations = json.dumps([{"op": "replace", "path": "/gender", "value": "female"}])
    response = client.patch(
        f"/fhir/Patient?identifier={SYSTEM}|p4",
        content=operations,
        headers={"content-type": "application/json-patch+json"},
    )
    assert response.status_code == 200
    assert response.json()["gender"] == "female"


def test_conditional_delete_deletes_the_single_match(client):
    created = client.post("/fhir/Patient", json=patient("p5")).json()
    assert client.delete(f"/fhir/Patient?identifier={SYSTEM}|p5").status_code == 200
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410
    nothing = client.delete(f"/fhir/Patient?identifier={SYSTEM}|p5")
    assert nothing.status_code == 200
    assert "nothing" in nothing.json()["issue"][0]["diagnostics"]


def test_conditional_delete_with_several_matches_is_412(client):
    client.post("/fhir/Patient", json=patient("p6"))
    client.post("/fhir/Patient", json=patient("p6"))
    assert client.delete(f"/fhir/Patient?identifier={SYSTEM}|p6").status_code == 412
    assert count(client, f"identifier={SYSTEM}|p6") == 2


def test_conditional_operations_without_criteria_are_400(client):
    assert client.put("/fhir/Patient", json=patient("p7")).status_code == 400
    assert client.delete("/fhir/Patient").status_code == 400


@pytest.mark.slow
@pytest.mark.parametrize("criteria_in", ["header", "url"])
def test_twenty_concurrent_conditional_creates_make_exactly_one_resource(live_server, criteria_in):
    """20 clients race to create the same identifier: one 201, nineteen 200 naming the same id; with the
    criteria in If-None-Exist or in the URL (POST Patient?identifier=..., as fhirpy and Aidbox send)."""
    clients = 20
    barrier = Barrier(clients)

    def create(_: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=60) as http:
            http.get("/metadata")  # open the connection before the race starts
            barrier.wait()
            if criteria_in == "url":
                return http.post("/Patient", params={"identifier": f"{SYSTEM}|racer"}, json=patient("racer"))
            return http.post(
                "/Patient",
                json=patient("racer"),
                headers={"If-None-Exist": f"identifier={SYSTEM}|racer", "Content-Type": "application/fhir+json"},
            )

    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(create, range(clients)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (clients - 1) + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    found = httpx.get(f"{live_server}/Patient", params={"identifier": f"{SYSTEM}|racer", "_total": "accurate"}).json()
    assert found["total"] == 1


def test_if_none_exist_may_repeat_the_type(client):
    criteria = {"If-None-Exist": f"Patient?identifier={SYSTEM}|p8"}
    first = client.post("/fhir/Patient", json=patient("p8"), headers=criteria)
    second = client.post("/fhir/Patient", json=patient("p8"), headers=criteria)
    assert (first.status_code, second.status_code) == (201, 200)


def test_conditional_create_takes_its_criteria_from_the_url_too(client):
    """POST [type]?criteria (fhirpy's create(**search) and get_or_create, Aidbox) is If-None-Exist."""
    first = client.post("/fhir/Patient", params={"identifier": f"{SYSTEM}|u1"}, json=patient("u1"))
    second = client.post("/fhir/Patient", params={"identifier": f"{SYSTEM}|u1"}, json=patient("u1", gender="male"))
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert count(client, f"identifier={SYSTEM}|u1") == 1
    client.post("/fhir/Patient", json=patient("u2"))
    client.post("/fhir/Patient", json=patient("u2"))
    assert client.post("/fhir/Patient", params={"identifier": f"{SYSTEM}|u2"}, json=patient("u2")).status_code == 412
    unknown = client.post("/fhir/Patient", params={"shoe-size": "42"}, json=patient("u3"))
    assert unknown.status_code == 400
    assert unknown.json()["issue"][0]["expression"] == ["shoe-size"]
    both = client.post(
        "/fhir/Patient",
        params={"identifier": f"{SYSTEM}|u4"},
        json=patient("u4"),
        headers={"If-None-Exist": f"identifier={SYSTEM}|u4"},
    )
    assert both.status_code == 400
