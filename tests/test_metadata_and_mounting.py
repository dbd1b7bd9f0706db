"""The CapabilityStatement reflects the implementation; the app mounts inside a host app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.spec.registry import resource_types


def test_capability_statement_lists_types_interactions_and_search_parameters(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    rest = statement["rest"][0]
    listed = {r["type"]: r for r in rest["resource"]}
    assert set(listed) == set(resource_types())
    imaging = listed["ImagingStudy"]
    assert {i["code"] for i in imaging["interaction"]} >= {"read", "vread", "update", "patch", "delete", "create"}
    params = {p["name"]: p["type"] for p in imaging["searchParam"]}
    assert params["modality"] == "token"
    assert params["started"] == "date"
    assert params["subject"] == "reference"
    assert "_id" in params
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "search-system", "history-system"}


def test_capability_statement_leaves_out_unsupported_parameter_types(client):
    listed = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    observation = {p["name"]: p["type"] for p in listed["Observation"]["searchParam"]}
    assert observation["code-value-quantity"] == "composite"
    assert observation["value-quantity"] == "quantity"
    sequence = {p["name"] for p in listed["MolecularSequence"]["searchParam"]}
    assert "chromosome-variant-coordinate" not in sequence  # three components: not indexed
    patient = {p["name"] for p in listed["Patient"]["searchParam"]}
    assert "_text" not in patient  # special parameters: not supported


def test_app_mounts_inside_a_host_application(database_url):
    host = FastAPI()

    @host.get("/health")
    def health() -> dict:
        return {"ok": True}

    bridge = create_app(Settings(database_url=database_url, fhir_path=""))
    host.mount("/fhir", bridge)
    with TestClient(host, base_url="http://hospital.example") as http:
        assert http.get("/health").json() == {"ok": True}
        created = http.post("/fhir/Patient", json={"resourceType": "Patient"})
        assert created.status_code == 201
        location = created.headers["location"]
        assert location.startswith("http://hospital.example/fhir/Patient/")
        assert http.get(location).status_code == 200
        assert http.get("/fhir/metadata").json()["implementation"]["url"] == "http://hospital.example/fhir"
        bundle = http.get("/fhir/Patient").json()
        assert bundle["entry"][0]["fullUrl"].startswith("http://hospital.example/fhir/Patient/")
    bridge.state.services.close()


def test_public_base_url_is_used_in_links(database_url):
    app = create_app(Settings(database_url=database_url, public_base_url="https://pacs-bridge.hospital.eu/fhir"))
    with TestClient(app) as http:
        created = http.post("/fhir/Patient", json={"resourceType": "Patient"})
        assert created.headers["location"].startswith("https://pacs-bridge.hospital.eu/fhir/Patient/")
    app.state.services.close()
