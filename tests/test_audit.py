"""The audit trail: every request on patient-level data is recorded, failures too, and served as AuditEvent."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient
from sqlalchemy import select

from fhir_bridge.audit.tables import AUDIT
from tests.dicom_samples import multipart, study_set
from tests.security_helpers import ClientKey, headers_for

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'


def _events(client: TestClient, auditor: dict, query: str = "") -> list[dict]:
    answer = client.get(f"/fhir/AuditEvent?_count=100&{query}", headers=auditor)
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", [])]


def _rows(client: TestClient) -> list:
    with client.app.state.services.audit_log.engines.reader.connect() as connection:  # type: ignore[attr-defined]
        return list(connection.execute(select(AUDIT).order_by(AUDIT.c.id)).all())


def test_reads_writes_and_refusals_are_recorded_with_who_what_and_outcome(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    writer = headers_for(secured, client_keys, "writer")
    created = secured.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=writer)
    patient = f"Patient/{created.json()['id']}"
    assert secured.get(f"/fhir/{patient}", headers=writer).status_code == 200
    assert secured.get("/fhir/Patient/missing", headers=writer).status_code == 404
    assert secured.get("/fhir/Patient?gender=female", headers=writer).status_code == 200
    assert secured.get("/fhir/Patient").status_code == 401
    imaging = headers_for(secured, client_keys, "imaging-reader")
    assert secured.get(f"/fhir/{patient}", headers=imaging).status_code == 403

    auditor = headers_for(secured, client_keys, "auditor")
    events = _events(secured, auditor)
    summary = [(e["subtype"][0]["code"], e["action"], e["outcome"], e["agent"][0]["who"]["display"]) for e in events]
    assert summary[:6] == [
        ("create", "C", "0", "writer"),
        ("read", "R", "0", "writer"),
        ("read", "R", "4", "writer"),
        ("search-type", "E", "0", "writer"),
        ("search-type", "E", "4", "unauthenticated client"),
        ("read", "R", "4", "imaging-reader"),
    ]
    assert events[0]["entity"][0]["what"]["reference"] == patient  # from the Location of the create
    assert events[1]["entity"][0]["what"]["reference"] == patient
    search = events[3]["entity"][-1]
    assert base64.b64decode(search["query"]).decode() == "gender=female"
    assert "system/Patient.r" in events[5]["outcomeDesc"]
    assert events[0]["agent"][0]["network"]["address"]


def test_the_trail_is_searchable_by_client_entity_outcome_and_date(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    writer = headers_for(secured, client_keys, "writer")
    created = secured.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=writer).json()["id"]
    secured.get(f"/fhir/Patient/{created}", headers=writer)
    reader = headers_for(secured, client_keys, "reader")
    secured.get(f"/fhir/Patient/{created}", headers=reader)
    secured.get("/fhir/Patient/nope", headers=reader)
    auditor = headers_for(secured, client_keys, "auditor")
    assert len(_events(secured, auditor, "altid=reader")) == 2
    assert len(_events(secured, auditor, f"entity=Patient/{created}")) == 3
    assert len(_events(secured, auditor, "outcome=4&altid=reader")) == 1
    assert len(_events(secured, auditor, "subtype=create")) == 1
    assert len(_events(secured, auditor, "date=ge2020-01-01&altid=writer")) == 2
    assert _events(secured, auditor, "date=lt2020-01-01") == []
    refused = secured.get("/fhir/AuditEvent?patient=Patient/1", headers=auditor)
    assert refused.status_code == 400
    assert secured.get("/fhir/AuditEvent?date=yesterday", headers=auditor).status_code == 400
    # paging: next links walk the whole trail once
    seen, url = [], "/fhir/AuditEvent?_count=2"
    while url:
        page = secured.get(url, headers=auditor).json()
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) >= 5
    one = secured.get(f"/fhir/AuditEvent/{seen[0]}", headers=auditor)
    assert one.status_code == 200 and one.json()["resourceType"] == "AuditEvent"
    assert secured.get("/fhir/AuditEvent/999999", headers=auditor).status_code == 404


def test_the_trail_is_read_only(secured: TestClient, client_keys: dict[str, ClientKey], client: TestClient) -> None:
    event = {"resourceType": "AuditEvent"}
    for client_id in ("auditor", "writer"):  # wildcard write scopes do not reach AuditEvent either
        token = headers_for(secured, client_keys, client_id)
        assert secured.post("/fhir/AuditEvent", json=event, headers=token).status_code == 403
    # and with no access control at all, the server still refuses to take audit records from clients
    assert client.post("/fhir/AuditEvent", json=event).status_code == 405
    assert client.put("/fhir/AuditEvent/1", json={**event, "id": "1"}).status_code == 405
    assert client.delete("/fhir/AuditEvent/1").status_code == 405


def test_personal_search_values_and_dicom_identifiers_never_reach_the_trail(
    secured: TestClient, client_keys: dict[str, ClientKey]
) -> None:
    writer = headers_for(secured, client_keys, "writer")
    body = multipart([data for _, data in study_set(studies=1, series=1, instances=2)])
    stored = secured.post("/dicomweb/studies", content=body, headers={**writer, "Content-Type": STOW_TYPE})
    assert stored.status_code == 200
    secured.get("/fhir/Patient?identifier=PID-00001&name=Testperson", headers=writer)
    text = repr([tuple(row) for row in _rows(secured)])
    for direct in ("PID-00001", "Testperson", "1.2.826.0.1.3680043.10.543"):  # id, name, study UID root
        assert direct not in text, direct
    auditor = headers_for(secured, client_keys, "auditor")
    search = _events(secured, auditor, "subtype=search-type&altid=writer")[-1]
    query = base64.b64decode(search["entity"][-1]["query"]).decode()
    assert query.startswith("identifier=hmac%3A") and "name=hmac%3A" in query
    push = _events(secured, auditor, "subtype=create&altid=writer")[-1]
    assert push["entity"][-1]["description"] == "POST /dicomweb/studies"
    assert push["entity"][-1]["type"]["code"] == "ImagingStudy"


def test_without_access_control_requests_are_still_recorded(client: TestClient) -> None:
    assert client.get("/fhir/Patient/unknown").status_code == 404
    assert client.get("/fhir/metadata").status_code == 200  # public: not patient data, not recorded
    rows = _rows(client)
    assert [(row.interaction, row.status, row.client_id) for row in rows] == [("read", 404, None)]


def test_a_request_that_crashes_is_recorded_as_a_server_failure(app) -> None:  # type: ignore[no-untyped-def]
    def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/explode", explode)  # a route of the host's, outside the FHIR API: covered too
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        answer = client.get("/explode")
        assert answer.status_code == 500
        rows = _rows(client)
    assert [(row.path, row.status, row.detail) for row in rows] == [
        ("/explode", 500, "the request failed before it was answered")
    ]
