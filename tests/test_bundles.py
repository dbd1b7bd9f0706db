"""batch and transaction Bundles: atomicity, urn:uuid and conditional references, processing order."""

from __future__ import annotations

import base64
import json

SYSTEM = "urn:oid:1.2.3.4"


def transaction(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict, full_url: str | None = None, **request: str) -> dict:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def patient(value: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}


def study(subject: str) -> dict:
    return {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": subject}}


def total(client, url: str) -> int:
    return client.get(url, params={"_total": "accurate"}).json()["total"]


def test_transaction_resolves_urn_uuid_references(client):
    bundle = transaction(post(study("urn:uuid:p1")), post(patient("a"), "urn:uuid:p1"))
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    study_location, patient_location = (e["response"]["location"] for e in result["entry"])
    assert all(e["response"]["status"] == "201 Created" for e in result["entry"])
    patient_ref = "/".join(patient_location.split("/")[:2])
    stored = client.get(f"/fhir/{'/'.join(study_location.split('/')[:2])}").json()
    assert stored["subject"]["reference"] == patient_ref


def test_transaction_is_all_or_nothing(client):
    bad = {"resourceType": "Patient", "birthDate": "not-a-date"}
    response = client.post("/fhir", json=transaction(post(patient("b")), post(bad)))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"][0].startswith("Bundle.entry[1].resource")
    assert total(client, "/fhir/Patient") == 0
    assert "entry" not in client.get("/fhir/_history").json()


def test_transaction_failing_in_the_database_phase_leaves_nothing(client):
    # the second entry refers to a resource that exists nowhere: found only while writing
    response = client.post("/fhir", json=transaction(post(patient("c")), post(study("Patient/missing"))))
    assert response.status_code == 422
    assert total(client, "/fhir/Patient") == 0
    assert total(client, "/fhir/ImagingStudy") == 0


def test_transaction_with_unresolvable_urn_uuid_is_400(client):
    response = client.post("/fhir", json=transaction(post(study("urn:uuid:nowhere"))))
    assert response.status_code == 400
    assert "Bundle.entry[0]" in response.json()["issue"][0]["diagnostics"]


def test_transaction_resolves_conditional_references(client):
    client.post("/fhir/Patient", json=patient("known"))
    response = client.post("/fhir", json=transaction(post(study(f"Patient?identifier={SYSTEM}|known"))))
    assert response.status_code == 200, response.text
    studies = client.get("/fhir/ImagingStudy").json()["entry"]
    patient_id = client.get("/fhir/Patient").json()["entry"][0]["resource"]["id"]
    assert studies[0]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    missing = client.post("/fhir", json=transaction(post(study(f"Patient?identifier={SYSTEM}|unknown"))))
    assert missing.status_code == 404


def test_transaction_conditional_create_reuses_existing_for_references(client):
    existing = client.post("/fhir/Patient", json=patient("d")).json()
    bundle = transaction(
        post(patient("d"), "urn:uuid:p", ifNoneExist=f"identifier={SYSTEM}|d"),
        post(study("urn:uuid:p")),
    )
    result = client.post("/fhir", json=bundle).json()
    assert result["entry"][0]["response"]["status"] == "200 OK"
    stored_study = client.get("/fhir/ImagingStudy").json()["entry"][0]["resource"]
    assert stored_study["subject"]["reference"] == f"Patient/{existing['id']}"
    assert total(client, "/fhir/Patient") == 1


def test_transaction_processes_deletes_before_creates_and_gets_last(client):
    old = client.post("/fhir/Patient", json=patient("old")).json()
    bundle = transaction(
        {"request": {"method": "GET", "url": "Patient?_total=accurate"}},
        post(patient("new")),
        {"request": {"method": "DELETE", "url": f"Patient/{old['id']}"}},
        {"resource": {"resourceType": "Patient", "id": "put-1"}, "request": {"method": "PUT", "url": "Patient/put-1"}},
    )
    result = client.post("/fhir", json=bundle).json()
    search = result["entry"][0]["resource"]
    assert search["total"] == 2  # the GET sees the transaction's own writes: new + put-1, not old
    assert [e["response"]["status"] for e in result["entry"][1:]] == ["201 Created", "200 OK", "201 Created"]


def test_transaction_patch_entry_uses_binary_json_patch(client):
    created = client.post("/fhir/Patient", json=patient("e") | {"gender": "male"}).json()
    operations = base64.b64encode(
        json.dumps([{"op": "replace", "path": "/gender", "value": "female"}]).encode()
    ).decode()
    entry = {
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": operations},
        "request": {"method": "PATCH", "url": f"Patient/{created['id']}"},
    }
    assert client.post("/fhir", json=transaction(entry)).status_code == 200
    assert client.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "female"


def test_transaction_touching_one_resource_twice_is_400(client):
    put = {"resource": {"resourceType": "Patient", "id": "twice"}, "request": {"method": "PUT", "url": "Patient/twice"}}
    assert client.post("/fhir", json=transaction(put, put)).status_code == 400


def test_batch_entries_succeed_or_fail_on_their_own(client):
    bundle = transaction(
        post(patient("f")),
        post({"resourceType": "Patient", "gender": 12}),
        {"request": {"method": "GET", "url": "Patient/unknown"}},
        kind="batch",
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1] == "400"
    assert response.json()["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert statuses[2] == "404"
    assert total(client, "/fhir/Patient") == 1


def test_prefer_representation_returns_resources_in_bundle_responses(client):
    result = client.post(
        "/fhir", json=transaction(post(patient("g"))), headers={"Prefer": "return=representation"}
    ).json()
    assert result["entry"][0]["resource"]["identifier"][0]["value"] == "g"
    minimal = client.post("/fhir", json=transaction(post(patient("h"))), headers={"Prefer": "return=minimal"}).json()
    assert "resource" not in minimal["entry"][0]


def test_posting_something_else_than_a_bundle_to_the_base_is_400(client):
    assert client.post("/fhir", json={"resourceType": "Patient"}).status_code == 400
    assert client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    bad_entry = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "FETCH", "url": "Patient"}}],
    }
    assert client.post("/fhir", json=bad_entry).json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]


def test_response_entries_that_carry_a_resource_have_its_full_url(client):
    """bundle.html: an entry with a resource has a fullUrl; in transaction- and batch-responses too (a
    search answered in a batch is a Bundle without a URL of its own: its id as a urn:uuid)."""
    created = client.post("/fhir/Patient", json=patient("i")).json()
    result = client.post("/fhir", json=transaction(post(patient("j")))).json()
    (entry,) = result["entry"]
    assert entry["fullUrl"] == f"http://testserver/fhir/{entry['response']['location'].split('/_history')[0]}"
    assert entry["fullUrl"].endswith(f"/{entry['resource']['id']}")
    batch = client.post(
        "/fhir",
        json=transaction(
            {"request": {"method": "GET", "url": f"Patient/{created['id']}"}},
            {"request": {"method": "GET", "url": "Patient?identifier=urn:oid:1.2.3.4|i"}},
            post(patient("k")),
            kind="batch",
        ),
    ).json()
    read, search, write = batch["entry"]
    assert read["fullUrl"] == f"http://testserver/fhir/Patient/{created['id']}"
    assert search["fullUrl"] == f"urn:uuid:{search['resource']['id']}"
    assert write["fullUrl"].endswith(f"/Patient/{write['resource']['id']}")


def test_an_empty_batch_answers_a_response_without_entries(client):
    """json.html: no empty arrays, so an empty batch-response has no entry element."""
    result = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch"}).json()
    assert result["type"] == "batch-response"
    assert "entry" not in result
