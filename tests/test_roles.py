"""``clients add --role``: each named scope bundle lets its client do its job end to end, and nothing beyond.

The clients are registered by the real CLI, get their tokens from the built-in token endpoint with
every scope of their registration, and use the running app as they would in a hospital.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import main
from fhir_bridge.security.clients import ClientRegistry
from fhir_bridge.security.roles import ROLES
from tests.annotation_samples import annotated_study
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, study_set, uid
from tests.security_helpers import ClientKey, bearer, ec_key
from tests.test_clinical_preview import CONCEPT_MAP, GRADING

STOW = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'
MAPPING_EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
SAMPLES = Path(__file__).parent / "data" / "clinical"
# The CSV radiology reports name the same studies as the HL7 ones (study UID, accession number) under patient ids
# without the HL7 issuer: in one store they are refused as another patient's (a data check, after the scope check).
SAME_STUDIES_AS_HL7 = {"radiology-report"}
CLINICAL_UPLOADS = {  # every shipped mapping, with an export it reads
    "cancer-diagnosis": (MAPPING_EXAMPLES / "cancer-diagnosis.csv", "text/csv"),
    "patient-demographics": (MAPPING_EXAMPLES / "patient-demographics.csv", "text/csv"),
    "radiology-report": (MAPPING_EXAMPLES / "radiology-report.csv", "text/csv"),
    "radiology-report-hl7v2": (MAPPING_EXAMPLES / "radiology-report.hl7", "x-application/hl7-v2+er7"),
    "radiology-report-ris-de": (SAMPLES / "ris-befunde.csv", "application/vnd.ms-excel"),
    "tumour-registry": (SAMPLES / "tumour-registry.csv", "text/csv"),
    "oru-r01-results": (SAMPLES / "oru-r01-lab.hl7", "x-application/hl7-v2+er7"),
}


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """The app with access control on and one client per role, registered with `fhir-bridge clients add --role`."""
    keys: dict[str, ClientKey] = {}
    for role in ROLES:
        keys[role] = ec_key(f"{role}-1")
        jwks = tmp_path / f"{role}.jwks.json"
        jwks.write_text(json.dumps(keys[role].jwks()))
        assert main(["clients", "add", role, "--role", role, "--jwks", str(jwks), "--database-url", database_url]) == 0
    site_mappings = tmp_path / "site-mappings"
    site_mappings.mkdir()
    (site_mappings / "grading.yaml").write_text(GRADING)  # a site mapping translating codes with a ConceptMap
    settings = Settings(
        database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY, mappings_dir=site_mappings
    )
    app = create_app(settings)
    keys["terminologist"] = ec_key("terminologist-1")  # keeps the site's ConceptMaps
    registry = ClientRegistry(app.state.services.engines)
    registry.add("terminologist", "system/ConceptMap.cu", jwks=keys["terminologist"].jwks(), jwks_url=None)
    with TestClient(app, base_url="http://testserver") as client:
        headers = {role: bearer(client, role, keys[role], ROLES[role].scope) for role in ROLES}
        terminologist = bearer(client, "terminologist", keys["terminologist"], "system/ConceptMap.cu")
        assert client.put("/fhir/ConceptMap/grading", json=CONCEPT_MAP, headers=terminologist).status_code == 201
        yield client, headers
    app.state.services.close()


def _stow(client: TestClient, headers: dict[str, str], parts: list[bytes]) -> int:
    return client.post(
        "/dicomweb/studies", content=multipart(parts), headers={**headers, "Content-Type": STOW}
    ).status_code


def _studies_the_example_reports_describe() -> list[bytes]:
    """The studies the shipped reports' samples name: by accession number (and the RIS's by study UID too)."""
    studies = [
        (Patient("PID-00001", "Testperson^Study1", "19410111", "F", "HOSP"), uid(1), "ACC000001"),
        (Patient("PID-00002", "Testperson^Study2", "19420212", "M", "HOSP"), uid(2), "ACC000002"),
    ]
    for number, pid in ((117, "P-0201"), (118, "P-0202"), (119, "P-0203")):
        studies.append(
            (Patient(pid, "Testperson^X", "19580704", "F"), f"1.2.826.0.1.3680043.10.1234.{number}", f"ACC000{number}")
        )
    return [
        instance(
            "CT_small.dcm",
            patient=patient,
            study_uid=study_uid,
            series_uid=f"{study_uid}.1",
            sop_uid=f"{study_uid}.1.1",
            AccessionNumber=accession,
        )
        for patient, study_uid, accession in studies
    ]


def _upload(client: TestClient, headers: dict[str, str], mapping: str) -> tuple[int, dict]:
    sample, media_type = CLINICAL_UPLOADS[mapping]
    answer = client.post(
        "/ingest/clinical",
        params={"mapping": mapping},
        content=sample.read_bytes(),
        headers={**headers, "Content-Type": media_type},
    )
    return answer.status_code, (answer.json() if answer.status_code == 200 else {})


def test_every_shipped_mapping_has_an_example_upload_here() -> None:
    from fhir_bridge.mapping.clinical import MappingRegistry

    assert set(MappingRegistry.for_site(None).names()) == set(CLINICAL_UPLOADS)


def test_dicom_sender_pushes_images_and_derived_objects_and_reads_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, headers = site
    sender = headers["dicom-sender"]
    assert _stow(client, sender, [data for _, data in study_set(studies=2, series=2, instances=2)]) == 200
    assert _stow(client, sender, annotated_study(1).all) == 200  # CT, SEG, TID 1500 SR, KOS
    assert _stow(client, sender, annotated_study(1).all) == 200  # again: updates, unchanged
    for path in (
        "/fhir/Patient",
        "/fhir/ImagingStudy",
        "/fhir/ImagingStudy/x",
        "/fhir/AuditEvent",
        "/catalogue/counts",
    ):
        assert client.get(path, headers=sender).status_code == 403, path
    assert client.post("/fhir/Condition", json={"resourceType": "Condition"}, headers=sender).status_code == 403
    assert client.get("/fhir/$export", headers={**sender, "Prefer": "respond-async"}).status_code == 403
    assert _upload(client, sender, "cancer-diagnosis")[0] == 403


def test_clinical_sender_uploads_through_every_shipped_mapping_and_reads_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, headers = site
    assert _stow(client, headers["dicom-sender"], _studies_the_example_reports_describe()) == 200
    sender = headers["clinical-sender"]
    for mapping in CLINICAL_UPLOADS:
        status, result = _upload(client, sender, mapping)
        assert status == 200, (mapping, status)
        summary = result["summary"]
        if mapping in SAME_STUDIES_AS_HL7:  # linked to these studies only under another patient identity: refused
            assert all("another patient" in json.dumps(record) for record in result["records"]), result
            continue
        assert summary["created"] + summary["updated"] + summary["unchanged"] >= 1, (mapping, result["records"])
    translated = client.post(
        "/ingest/clinical",
        params={"mapping": "grading"},
        content="pid,id,grade\nP1,1,2\n",
        headers={**sender, "Content-Type": "text/csv"},
    )
    assert translated.status_code == 200 and translated.json()["summary"]["created"] == 1
    for path in ("/fhir/Patient", "/fhir/Condition", "/fhir/AuditEvent", "/fhir/ConceptMap"):
        assert client.get(path, headers=sender).status_code == 403, path
    assert _stow(client, sender, annotated_study(3).all) == 403
    assert client.delete("/fhir/Patient/x", headers=sender).status_code == 403


def test_harvester_searches_pages_exports_and_counts_but_writes_nothing(site) -> None:  # type: ignore[no-untyped-def]
    client, headers = site
    assert _stow(client, headers["dicom-sender"], annotated_study(4).all) == 200
    harvester = headers["harvester"]
    found = client.get("/fhir/ImagingStudy", params={"_include": "ImagingStudy:subject"}, headers=harvester)
    assert found.status_code == 200 and {e["resource"]["resourceType"] for e in found.json()["entry"]} == {
        "ImagingStudy",
        "Patient",
    }
    assert client.get("/fhir/_history", headers=harvester).status_code == 200
    assert (
        client.get("/fhir/Observation", params={"derived-from:missing": "false"}, headers=harvester).status_code == 200
    )
    assert client.get("/catalogue/counts", headers=harvester).status_code == 200
    kicked = client.get("/fhir/$export", headers={**harvester, "Prefer": "respond-async"})
    assert kicked.status_code == 202, kicked.text
    status_url = kicked.headers["content-location"]
    deadline = time.monotonic() + 60
    while (status := client.get(status_url, headers=harvester)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status.status_code == 200
    files = [item["url"] for item in status.json()["output"]]
    assert files and all(client.get(url, headers=harvester).status_code == 200 for url in files)
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=harvester).status_code == 403
    assert client.delete("/fhir/ImagingStudy/x", headers=harvester).status_code == 403
    assert _stow(client, harvester, annotated_study(5).all) == 403
    assert _upload(client, harvester, "patient-demographics")[0] == 403
    assert client.get("/fhir/AuditEvent", headers=harvester).status_code == 403


def test_auditor_reads_the_audit_trail_only(site) -> None:  # type: ignore[no-untyped-def]
    client, headers = site
    auditor = headers["auditor"]
    trail = client.get("/fhir/AuditEvent", headers=auditor)
    assert trail.status_code == 200 and trail.json()["resourceType"] == "Bundle"
    for path in ("/fhir/Patient", "/fhir/ImagingStudy", "/catalogue/counts", "/fhir/_history"):
        assert client.get(path, headers=auditor).status_code == 403, path
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=auditor).status_code == 403
    assert _stow(client, auditor, annotated_study(6).all) == 403


def test_the_access_control_page_lists_each_role_with_its_scopes() -> None:
    page = (Path(__file__).parent.parent / "docs" / "access-control.md").read_text(encoding="utf-8")
    for role in ROLES.values():
        assert f"| `{role.name}` |" in page and f"| `{role.scope}` |" in page, role.name
