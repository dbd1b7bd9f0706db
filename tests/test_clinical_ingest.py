"""POST /ingest/clinical on SQLite and PostgreSQL: per-record results, idempotence, bad input, atomic mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
CSV = {"Content-Type": "text/csv"}
DIAGNOSIS_HEADER = (
    "patient_id,diagnosis_id,diagnosis_date,icd10,icdo3_topography,icdo3_morphology,stage_type,t_stage,grade,"
    "tumour_size_mm,snomed_code,snomed_display,diagnosis_text,body_site_snomed,laterality,n_stage,m_stage,stage_group\n"
)  # every column the mapping reads (a header without one is refused); the rows leave the last ones empty


def _post(client: TestClient, mapping: str, body: bytes | str, headers: dict | None = None, **params: str) -> dict:
    response = client.post(
        "/ingest/clinical", params={"mapping": mapping, **params}, content=body, headers=headers or CSV
    )
    assert response.status_code in (200, 422), response.text
    return response.json() | {"status_code": response.status_code}


def _all(client: TestClient, resource_type: str, **params: str) -> list[dict]:
    bundle = client.get(f"/fhir/{resource_type}", params={"_count": 200, **params}).json()
    return [entry["resource"] for entry in bundle.get("entry", []) if entry["search"]["mode"] == "match"]


def test_a_cancer_diagnosis_export_becomes_conditions_and_observations(client):
    result = _post(client, "cancer-diagnosis", (EXAMPLES / "cancer-diagnosis.csv").read_bytes())
    assert result["summary"] == {"records": 2, "created": 2, "updated": 0, "unchanged": 0, "failed": 0, "notWritten": 0}
    assert [r["row"] for r in result["records"]] == [1, 2]
    first = result["records"][0]["resources"]
    assert {r["reference"].split("/")[0] for r in first} == {"Patient", "Condition", "Observation"}
    conditions = _all(client, "Condition")
    assert len(conditions) == 2
    breast = next(c for c in conditions if c["code"]["coding"][0]["code"] == "C50.4")
    assert breast["onsetDateTime"] == "2024-03-12"
    assert breast["bodySite"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/icd-o-3",
        "code": "C50.4",
    }
    assert breast["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "8500/3"
    observations = _all(client, "Observation", focus=f"Condition/{breast['id']}")
    codes = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(codes) == {"21905-5", "21906-3", "21907-1", "21908-9", "33732-9", "21889-1"}
    assert codes["21889-1"]["valueQuantity"]["value"] == 23
    assert codes["33732-9"]["valueCodeableConcept"]["coding"][0]["code"] == "G2"
    assert breast["stage"][0]["assessment"] == [{"reference": f"Observation/{codes['21908-9']['id']}"}]
    assert len(result["provenance"]) == 1
    provenance = client.get(f"/fhir/Provenance/{result['provenance'][0]}").json()
    assert any(t["reference"].startswith(f"Condition/{breast['id']}/_history/") for t in provenance["target"])


def test_re_pushing_updates_instead_of_duplicating(client):
    body = (EXAMPLES / "cancer-diagnosis.csv").read_text()
    _post(client, "cancer-diagnosis", body)
    again = _post(client, "cancer-diagnosis", body)
    assert again["summary"]["unchanged"] == 2 and again["summary"]["created"] == 0
    assert again["provenance"] == []  # nothing was written
    changed = _post(client, "cancer-diagnosis", body.replace(",G2,", ",G3,"))
    assert changed["summary"]["updated"] == 1 and changed["summary"]["unchanged"] == 1
    statuses = {r["reference"].split("/")[0] + r["status"] for r in changed["records"][0]["resources"]}
    assert "Observationupdated" in statuses and "Conditionunchanged" in statuses
    assert len(_all(client, "Condition")) == 2
    assert len(_all(client, "Observation")) == 10
    grade = _all(
        client,
        "Observation",
        code="http://loinc.org|33732-9",
        subject=_all(client, "Condition")[0]["subject"]["reference"],
    )
    assert grade and all(g["meta"]["versionId"] in ("1", "2") for g in grade)


def test_a_resource_created_over_rest_with_the_identifier_is_the_one_updated(app, client):
    mapping = app.state.services.mappings.load("cancer-diagnosis")
    row = {"patient_id": "PID-00001", "diagnosis_id": "D-0001", "diagnosis_date": "12/03/2024"}
    system, value = app.state.services.clinical_ingest.mapper(mapping).map(row).produced[0].identifier
    existing = {
        "resourceType": "Condition",
        "identifier": [{"system": system, "value": value}],
        "subject": {"display": "entered by hand"},
    }
    created = client.post("/fhir/Condition", json=existing).json()
    result = _post(client, "cancer-diagnosis", (EXAMPLES / "cancer-diagnosis.csv").read_bytes())
    assert {"reference": f"Condition/{created['id']}", "status": "updated"} in result["records"][0]["resources"]
    assert len(_all(client, "Condition")) == 2
    stage = _all(client, "Observation", code="http://loinc.org|21908-9")[0]
    assert stage["focus"] == [{"reference": f"Condition/{created['id']}"}]  # references follow the stored id
    assert client.post("/fhir/Condition", json=existing).status_code == 201  # a second carrier of the identifier
    again = _post(client, "cancer-diagnosis", (EXAMPLES / "cancer-diagnosis.csv").read_bytes())
    assert again["records"][0]["status"] == "failed"  # which one to update? the record fails rather than guess
    assert "2 stored Condition resources carry the identifier" in again["records"][0]["errors"][0]["reason"]
    assert again["records"][1]["status"] == "unchanged"


def test_bad_rows_are_reported_with_row_column_and_reason_and_the_rest_is_stored(client):
    body = DIAGNOSIS_HEADER + (
        "P1,D1,01/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G1,10\n"
        ",D2,01/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G1,10\n"  # no patient id
        "P3,D3,31/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G1,10\n"  # no such date
        "P4,D4,01/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G7,10\n"  # unknown grade
        "P5,D5,01/02/2024,C5X,C50.4,8500/3,clinical,cT1,G1,ten\n"  # bad ICD-10 code and size
        "P6,D6,01/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G1,10\n"
    )
    result = _post(client, "cancer-diagnosis", body)
    assert result["summary"]["created"] == 2 and result["summary"]["failed"] == 4
    failed = {r["row"]: r for r in result["records"] if r["status"] == "failed"}
    assert failed[2]["line"] == 3 and failed[2]["errors"][0]["column"] == "patient_id"
    assert failed[3]["errors"][0]["column"] == "diagnosis_date" and "not a date" in failed[3]["errors"][0]["reason"]
    assert failed[4]["errors"] == [{"column": "grade", "reason": "unknown code 'G7' (known: G1, G2, G3, G4, GX)"}]
    assert {e["column"] for e in failed[5]["errors"]} == {"icd10", "tumour_size_mm"}
    assert len(_all(client, "Condition")) == 2
    assert len(_all(client, "Patient")) == 2  # nothing half-written for the failed rows


def test_atomic_mode_writes_nothing_when_a_record_fails(client):
    body = DIAGNOSIS_HEADER + "P1,D1,01/02/2024,C50.4,C50.4,8500/3,clinical,cT1,G1,10\nP2,D2,01/02/2024,,,,,,G9,\n"
    result = _post(client, "cancer-diagnosis", body, mode="atomic")
    assert result["status_code"] == 422
    assert [r["status"] for r in result["records"]] == ["not-written", "failed"]
    assert _all(client, "Condition") == [] and _all(client, "Patient") == [] and _all(client, "Provenance") == []
    good = _post(
        client, "cancer-diagnosis", body.splitlines(keepends=True)[0] + body.splitlines(keepends=True)[1], mode="atomic"
    )
    assert good["status_code"] == 200 and good["summary"]["created"] == 1


def test_a_report_for_a_study_not_stored_yet_is_kept_waiting_for_it(client):
    body = (EXAMPLES / "radiology-report.csv").read_bytes()
    result = _post(client, "radiology-report", body)
    assert result["summary"]["created"] == 2 and result["summary"]["failed"] == 0
    reports = _all(client, "DiagnosticReport")
    # a logical reference to the study as stored (UID, or keyed-hashed accession number), and a tag per key
    assert {r["imagingStudy"][0]["identifier"].get("system") for r in reports} == {"urn:dicom:uid", None}
    assert all(t["system"] == "urn:fhir-bridge:awaiting-study" for r in reports for t in r["meta"]["tag"])
    assert "ACC000002" not in str(reports)


def test_json_and_ndjson_bodies_use_the_same_mapping(client):
    rows = [
        {"patient_id": "P1", "diagnosis_id": "D1", "diagnosis_date": "2024-02-01", "icd10": "C50.4", "grade": "G1"},
        {"patient_id": "P2", "diagnosis_id": "D2", "diagnosis_date": "2024-02-02", "icd10": "C61"},
    ]
    as_json = _post(client, "cancer-diagnosis", json.dumps(rows), {"Content-Type": "application/json"})
    assert as_json["summary"]["created"] == 2
    ndjson = "\n".join(json.dumps(r) for r in rows) + "\n{broken\n"
    again = _post(client, "cancer-diagnosis", ndjson, {"Content-Type": "application/x-ndjson"})
    assert [r["status"] for r in again["records"]] == ["unchanged", "unchanged", "failed"]
    assert again["records"][2]["line"] == 3 and "not valid JSON" in again["records"][2]["errors"][0]["reason"]


def test_requests_that_cannot_be_served(client):
    assert (
        client.post("/ingest/clinical", params={"mapping": "nope"}, content=b"a\n1\n", headers=CSV).status_code == 404
    )
    assert client.post("/ingest/clinical", params={"mapping": "../x"}, content=b"a", headers=CSV).status_code == 400
    wrong = client.post(
        "/ingest/clinical", params={"mapping": "cancer-diagnosis"}, content=b"x", headers={"Content-Type": "image/png"}
    )
    assert wrong.status_code == 415 and wrong.json()["resourceType"] == "OperationOutcome"
    assert (
        client.post("/ingest/clinical", params={"mapping": "cancer-diagnosis"}, content=b"", headers=CSV).status_code
        == 400
    )


@pytest.fixture
def site_mappings(tmp_path: Path) -> Path:
    folder = tmp_path / "site-mappings"
    folder.mkdir()
    (folder / "broken.yaml").write_text(
        "name: broken\nresources:\n  - name: x\n    resourceType: Nope\n    template: {}\n"
    )
    return folder


def test_a_malformed_mapping_is_refused_before_any_data_is_read(database_url, site_mappings):
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, mappings_dir=site_mappings))
    with TestClient(app) as client:
        response = client.post("/ingest/clinical", params={"mapping": "broken"}, content=b"a\n1\n", headers=CSV)
        assert response.status_code == 500
        diagnostics = response.json()["issue"][0]["diagnostics"]
        assert "nothing was read" in diagnostics and "line 4, /resources/0/resourceType" in diagnostics
        assert client.get("/fhir/_history").json().get("entry", []) == []
    app.state.services.close()
