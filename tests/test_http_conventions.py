"""Formats, Prefer, conditional reads and error answers: always an OperationOutcome, never a 500."""

from __future__ import annotations

import json

import pytest

from fhir_bridge import Settings, create_app


def create(client) -> dict:
    return client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}).json()


def test_json_media_types_are_accepted_and_answered(client):
    patient = create(client)
    url = f"/fhir/Patient/{patient['id']}"
    assert (
        client.get(url, headers={"Accept": "application/fhir+json"})
        .headers["content-type"]
        .startswith("application/fhir+json")
    )
    assert (
        client.get(url, headers={"Accept": "application/json"}).headers["content-type"].startswith("application/json")
    )
    assert client.get(url, params={"_format": "json"}).status_code == 200
    body = json.dumps({"resourceType": "Patient"})
    assert client.post("/fhir/Patient", content=body, headers={"Content-Type": "application/json"}).status_code == 201


def test_unsupported_formats_are_406_and_415(client):
    patient = create(client)
    url = f"/fhir/Patient/{patient['id']}"
    assert client.get(url, params={"_format": "xml"}).status_code == 406
    assert client.get(url, headers={"Accept": "application/fhir+xml"}).status_code == 406
    response = client.post("/fhir/Patient", content="<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


def test_pretty_output_is_indented(client):
    patient = create(client)
    text = client.get(f"/fhir/Patient/{patient['id']}", params={"_pretty": "true"}).text
    assert text.startswith('{\n  "resourceType"')
    bundle = client.get("/fhir/Patient", params={"_pretty": "true"}).text
    assert '\n      "resource": {\n        "resourceType": "Patient"' in bundle


@pytest.mark.parametrize(
    ("prefer", "expect_body"),
    [("return=minimal", None), ("return=representation", "Patient"), ("return=OperationOutcome", "OperationOutcome")],
)
def test_prefer_return(client, prefer, expect_body):
    response = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Prefer": prefer})
    assert response.status_code == 201
    assert response.headers["location"]
    if expect_body is None:
        assert response.content == b""
    else:
        assert response.json()["resourceType"] == expect_body


def test_if_none_match_gives_304(client):
    patient = create(client)
    url = f"/fhir/Patient/{patient['id']}"
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"0"'}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "expression"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"gender": "male"}', 400, "resourceType"),
        (b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400, "resourceType"),
        (b'{"resourceType": "Spaceship"}', 400, "resourceType"),
        (b'{"resourceType": "Patient", "birthDate": "yesterday"}', 400, "Patient.birthDate"),
        (b'{"resourceType": "Patient", "shoeSize": 42}', 400, "Patient.shoeSize"),
        (b'{"resourceType": "Patient", "name": [{"given": "Peter"}]}', 400, "Patient.name[0].given"),
    ],
)
def test_bad_bodies_are_clear_4xx(client, body, status, expression):
    response = client.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"]
    if expression:
        assert expression in outcome["issue"][0]["expression"]
    assert "entry" not in client.get("/fhir/_history").json()


def test_unknown_type_and_bad_ids_are_4xx(client):
    assert client.get("/fhir/Spaceship/1").status_code == 404  # http.html: unknown resource type
    assert client.post("/fhir/Spaceship", json={"resourceType": "Spaceship"}).status_code == 404
    response = client.put("/fhir/Patient/bad id!", json={"resourceType": "Patient", "id": "bad id!"})
    assert response.status_code == 400
    assert client.get("/fhir/Patient/" + "x" * 65).status_code == 400


def test_unsupported_method_is_405_operation_outcome(client):
    response = client.post("/fhir/Patient/1/_history/1", json={})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_oversized_body_is_413(database_url):
    from fastapi.testclient import TestClient

    app = create_app(Settings(database_url=database_url, max_body_bytes=2048))
    with TestClient(app) as small:
        big = {"resourceType": "Patient", "name": [{"text": "x" * 4096}]}
        response = small.post("/fhir/Patient", json=big)
        assert response.status_code == 413
        assert response.json()["issue"][0]["code"] == "too-long"

        def chunks():
            yield b'{"resourceType": "Patient", "name": [{"text": "'
            for _ in range(10):
                yield b"y" * 512
            yield b'"}]}'

        streamed = small.post("/fhir/Patient", content=chunks(), headers={"Content-Type": "application/fhir+json"})
        assert streamed.status_code == 413
    app.state.services.close()


def test_deleting_a_referenced_resource_is_409(client):
    client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"})
    client.post(
        "/fhir/ImagingStudy",
        json={"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": "Patient/p"}},
    )
    response = client.delete("/fhir/Patient/p")
    assert response.status_code == 409
    assert "ImagingStudy/" in response.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p").status_code == 200


def test_writing_a_dangling_reference_is_422(client):
    response = client.post(
        "/fhir/ImagingStudy",
        json={"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": "Patient/ghost"}},
    )
    assert response.status_code == 422
    assert "Patient/ghost" in response.json()["issue"][0]["diagnostics"]


def test_referential_integrity_can_be_switched_off(database_url):
    from fastapi.testclient import TestClient

    app = create_app(Settings(database_url=database_url, enforce_referential_integrity=False))
    with TestClient(app) as lenient:
        study = {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": "Patient/ghost"}}
        assert lenient.post("/fhir/ImagingStudy", json=study).status_code == 201
    app.state.services.close()


def test_if_none_match_compares_weakly(client):
    patient = create(client)
    url = f"/fhir/Patient/{patient['id']}"
    for tag in ('"1"', "1", 'W/"2", W/"1"', "*"):
        assert client.get(url, headers={"If-None-Match": tag}).status_code == 304, tag


def test_create_with_url_parameters_is_a_conditional_create_not_a_silent_duplicate(client):
    """Search parameters in a create's URL are its If-None-Exist (fhirpy, Aidbox), never ignored."""
    resource = {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]}
    first = client.post("/fhir/Patient?identifier=s%7C1", json=resource)
    second = client.post("/fhir/Patient?identifier=s%7C1", json=resource)
    assert (first.status_code, second.status_code) == (201, 200)
    assert client.get("/fhir/_history").json()["total"] == 1
