"""Before and around the write: dry run (HTTP and CLI) writes nothing, a header lacking a mapped column
is refused up front, the row report downloads as NDJSON, CSV arrives as application/vnd.ms-excel,
and codes are translated by ConceptMaps kept in the store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, cli, create_app
from fhir_bridge.security.clients import ClientRegistry
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.security_helpers import SCOPES, headers_for

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
CSV = {"Content-Type": "text/csv"}


def _history(client: TestClient) -> list:
    return client.get("/fhir/_history").json().get("entry", [])


def test_a_dry_run_shows_each_rows_resources_and_problems_and_writes_nothing(client):
    lines = (EXAMPLES / "cancer-diagnosis.csv").read_text().splitlines(keepends=True)
    body = "".join(lines) + lines[1].replace("PID-00001", "").replace(",G2,", ",G9,")
    response = client.post(
        "/ingest/clinical", params={"mapping": "cancer-diagnosis", "dry-run": "true"}, content=body, headers=CSV
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["dryRun"] is True and answer["provenance"] == []
    assert answer["summary"] == {"records": 3, "created": 2, "updated": 0, "unchanged": 0, "failed": 1, "notWritten": 0}
    first = answer["records"][0]["resources"]
    condition = next(r["resource"] for r in first if r["reference"].startswith("Condition/"))
    assert condition["code"]["coding"][0]["code"] == "C50.4" and condition["onsetDateTime"] == "2024-03-12"
    assert {r["status"] for r in first} == {"created"}
    assert answer["records"][2]["errors"] == [  # the empty patient id hides not the unknown grade
        {"column": "patient_id", "reason": "the patient id is missing"},
        {"column": "grade", "reason": "unknown code 'G9' (known: G1, G2, G3, G4, GX)"},
    ]
    assert _history(client) == []  # nothing written, no Provenance either
    stored = client.post("/ingest/clinical", params={"mapping": "cancer-diagnosis"}, content=body, headers=CSV)
    assert stored.json()["summary"]["created"] == 2
    versions = len(_history(client))
    again = client.post(
        "/ingest/clinical",
        params={"mapping": "cancer-diagnosis", "dry-run": "true", "mode": "atomic"},
        content="".join(lines),
        headers=CSV,
    ).json()
    assert again["summary"]["unchanged"] == 2  # what a push would do now: nothing
    assert len(_history(client)) == versions


def test_the_row_report_downloads_as_ndjson_and_csv_arrives_as_vnd_ms_excel(client):
    lines = (EXAMPLES / "cancer-diagnosis.csv").read_text().splitlines(keepends=True)
    body = "".join(lines) + lines[1].replace("12/03/2024", "2024-13-45")
    response = client.post(
        "/ingest/clinical",
        params={"mapping": "cancer-diagnosis", "report": "ndjson"},
        content=body,
        headers={"Content-Type": "application/vnd.ms-excel"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"] == 'attachment; filename="cancer-diagnosis-report.ndjson"'
    rows = [orjson.loads(line) for line in response.text.splitlines()]
    assert [(r["row"], r["line"], r["status"]) for r in rows] == [
        (1, 2, "created"),
        (2, 3, "created"),
        (3, 4, "failed"),
    ]
    assert rows[2]["errors"][0]["column"] == "diagnosis_date"
    by_accept = client.post(
        "/ingest/clinical",
        params={"mapping": "cancer-diagnosis"},
        content="".join(lines),
        headers={"Content-Type": "application/vnd.ms-excel", "Accept": "application/x-ndjson"},
    )
    assert [orjson.loads(line)["status"] for line in by_accept.text.splitlines()] == ["unchanged", "unchanged"]


def test_a_header_without_a_mapped_column_is_refused_naming_the_columns(client):
    header, *rows = (EXAMPLES / "cancer-diagnosis.csv").read_text().splitlines(keepends=True)
    misspelt = header.replace("laterality", "lateralty").replace("grade", "grading")
    response = client.post(
        "/ingest/clinical", params={"mapping": "cancer-diagnosis"}, content=misspelt + "".join(rows), headers=CSV
    )
    assert response.status_code == 422
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "the file's header lacks the columns grade, laterality that the mapping cancer-diagnosis reads" in (
        diagnostics
    )
    assert _history(client) == []


def test_the_command_line_dry_run_prints_each_row_and_refuses_a_bad_header(database_url, tmp_path, capsys):
    report = tmp_path / "report.ndjson"
    arguments = ["--mapping", "cancer-diagnosis", "--database-url", database_url, "--no-progress"]
    export = str(EXAMPLES / "cancer-diagnosis.csv")
    assert cli.main(["ingest-clinical", export, *arguments, "--dry-run", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"{export} row 1 (line 2): created: Patient/" in out and "(created), Condition/" in out
    assert "dry run, nothing was written: ingested 2 records" in out
    bodies = [orjson.loads(line) for line in report.read_text().splitlines()]
    assert {r["resource"]["resourceType"] for r in bodies[0]["resources"]} == {"Patient", "Condition", "Observation"}
    bad = tmp_path / "bad.csv"
    bad.write_text((EXAMPLES / "cancer-diagnosis.csv").read_text().replace("icd10,", "icd_10,", 1))
    assert cli.main(["ingest-clinical", str(bad), *arguments]) == 2
    assert "the file's header lacks the column icd10 that the mapping cancer-diagnosis reads" in capsys.readouterr().out
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app) as client:
        assert _history(client) == []
    app.state.services.close()


GRADING = """
name: grading
source: {format: csv}
patient: {id: {$field: pid}}
resources:
  - name: grade
    resourceType: Observation
    identifier: {value: {$field: id}}
    template:
      status: final
      code: {coding: [{system: "http://loinc.org", code: 33732-9}]}
      subject: {$reference: patient}
      valueCodeableConcept:
        coding:
          - $field: grade
            $translate: {conceptMap: "https://hospital.example/fhir/ConceptMap/grading", system: "urn:local:grading"}
"""
CONCEPT_MAP = {
    "resourceType": "ConceptMap",
    "id": "grading",
    "url": "https://hospital.example/fhir/ConceptMap/grading",
    "status": "active",
    "group": [
        {
            "source": "urn:local:grading",
            "target": "http://snomed.info/sct",
            "element": [
                {"code": "1", "target": [{"code": "1228845001", "display": "G1 grade", "equivalence": "equivalent"}]},
                {"code": "2", "target": [{"code": "1228848004", "display": "G2 grade", "equivalence": "equivalent"}]},
                {"code": "9", "target": [{"equivalence": "unmatched"}]},
            ],
        }
    ],
}


@pytest.fixture
def grading_client(database_url: str, tmp_path: Path):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "grading.yaml").write_text(GRADING)
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, mappings_dir=folder))
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def test_codes_are_translated_by_a_concept_map_kept_in_the_store(grading_client):
    client = grading_client
    body = "pid,id,grade\nP1,1,2\nP2,2,9\nP3,3,3\n"
    refused = client.post("/ingest/clinical", params={"mapping": "grading"}, content=body, headers=CSV)
    assert refused.status_code == 422
    assert (
        "the ConceptMap https://hospital.example/fhir/ConceptMap/grading, which is not stored"
        in (refused.json()["issue"][0]["diagnostics"])
    )
    assert client.put("/fhir/ConceptMap/grading", json=CONCEPT_MAP).status_code == 201
    answer = client.post("/ingest/clinical", params={"mapping": "grading"}, content=body, headers=CSV).json()
    assert [r["status"] for r in answer["records"]] == ["created", "failed", "failed"]
    assert answer["records"][1]["errors"] == [
        {
            "column": "grade",
            "reason": "the ConceptMap https://hospital.example/fhir/ConceptMap/grading does not translate '9'",
        }
    ]
    observation = client.get("/fhir/Observation").json()["entry"][0]["resource"]
    assert observation["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "1228848004", "display": "G2 grade"}
    ]
    changed = {**CONCEPT_MAP, "group": [{**CONCEPT_MAP["group"][0], "unmapped": {"mode": "provided"}}]}
    client.put("/fhir/ConceptMap/grading", json=changed)  # the site edits its map as FHIR: the next push uses it
    again = client.post("/ingest/clinical", params={"mapping": "grading"}, content=body, headers=CSV).json()
    # 9 is mapped to nothing on purpose (unmatched); 3, which no element names, now keeps its code
    assert [r["status"] for r in again["records"]] == ["unchanged", "failed", "created"]


def test_a_translating_mapping_needs_the_right_to_read_concept_maps(database_url, tmp_path, client_keys):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "grading.yaml").write_text(GRADING)
    app = create_app(
        Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY, mappings_dir=folder)
    )
    ClientRegistry(app.state.services.engines).add(
        "writer", SCOPES["writer"], jwks=client_keys["writer"].jwks(), jwks_url=None
    )
    writes = "system/Observation.cu system/Patient.cu system/Provenance.cu"
    with TestClient(app, base_url="http://testserver") as client:
        everything = headers_for(client, client_keys, "writer")
        assert client.put("/fhir/ConceptMap/grading", json=CONCEPT_MAP, headers=everything).status_code == 201
        body, params = "pid,id,grade\nP1,1,2\n", {"mapping": "grading"}
        blind = headers_for(client, client_keys, "writer", writes)
        refused = client.post("/ingest/clinical", params=params, content=body, headers={**CSV, **blind})
        assert refused.status_code == 403 and "ConceptMap" in refused.text
        allowed = headers_for(client, client_keys, "writer", f"{writes} system/ConceptMap.r")
        answer = client.post("/ingest/clinical", params=params, content=body, headers={**CSV, **allowed})
        assert answer.status_code == 200 and answer.json()["summary"]["created"] == 1
    app.state.services.close()
