"""The proof: DICOM studies and the clinical exports of the same patients meet on one pseudonymised Patient.

Real DICOM files go in through STOW-RS, then the hospital's CSV exports and an HL7 v2 ORU^R01
through /ingest/clinical; the report is found with its study by ``_include``, and no original
patient id, name or birth date is anywhere in the database or in what the service answered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.store_consistency import database_text

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
BOUNDARY = "clinical-e2e"
PATIENTS = [
    Patient("PID-00001", "Testperson^Study1", "19410111", "F"),
    Patient("PID-00002", "Testperson^Study2", "19420212", "M"),
]
# What must never be stored or answered: ids, names, full birth dates (in every spelling the inputs use).
SECRETS = (
    "PID-00001",
    "PID-00002",
    "Testperson",
    "Study1",
    "Study2",
    "19410111",
    "1941-01-11",
    "11.01.1941",
    "1942-02-12",
    "19420212",
    "ACC000001",
    "ACC000002",
    "R-2024-0001",
    "D-0001",
    "FO-0001",
)


def _stow(client: TestClient, number: int, patient: Patient, issuer: str | None = None) -> None:
    patient = Patient(patient.patient_id, patient.name, patient.birth_date, patient.sex, issuer)
    parts = [
        instance(
            "CT_small.dcm" if number == 2 else "MR_small.dcm",
            patient=patient,
            study_uid=uid(number),
            series_uid=uid(number, 1),
            sop_uid=uid(number, 1, i),
            instance_number=i,
            AccessionNumber=f"ACC{number:06d}",
        )
        for i in (1, 2)
    ]
    response = client.post(
        "/dicomweb/studies",
        content=multipart(parts, BOUNDARY),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    assert response.status_code == 200, response.text


def _ingest(client: TestClient, mapping: str, body: bytes, content_type: str = "text/csv") -> dict:
    response = client.post(
        "/ingest/clinical", params={"mapping": mapping}, content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["summary"]["failed"] == 0, result
    return result


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, remap_uids=True)


def test_dicom_and_clinical_records_meet_on_one_pseudonymised_patient(client, database_url):
    answers: list[str] = []
    for number, patient in enumerate(PATIENTS, start=1):
        _stow(client, number, patient)
    for mapping in ("patient-demographics", "cancer-diagnosis", "radiology-report"):
        result = _ingest(client, mapping, (EXAMPLES / f"{mapping}.csv").read_bytes())
        answers.append(str(result))
    studies = client.get("/fhir/ImagingStudy", params={"_count": 10}).json()["entry"]
    assert len(studies) == 2
    study = next(e["resource"] for e in studies if e["resource"]["numberOfInstances"] == 2 and "MR" in str(e))
    patient_ref = study["subject"]["reference"]
    # UIDs are remapped by the pseudonymiser, yet the report found its study by the original StudyInstanceUID.
    assert uid(1) not in str(study)
    bundle = client.get(
        "/fhir/DiagnosticReport",
        params={"patient": patient_ref, "_include": "DiagnosticReport:imaging-study"},
    ).json()
    answers.append(str(bundle))
    kinds = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert kinds == {("DiagnosticReport", "match"), ("ImagingStudy", "include")}
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["subject"]["reference"] == patient_ref
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    # The second report names no StudyInstanceUID: its study was found by the (keyed-hashed) accession number.
    reports = client.get("/fhir/DiagnosticReport", params={"_count": 10}).json()["entry"]
    linked = sorted(e["resource"]["imagingStudy"][0]["reference"] for e in reports)
    assert linked == sorted(f"ImagingStudy/{e['resource']['id']}" for e in studies)
    # One Patient per person, carrying what DICOM and the demographics export said.
    patients = client.get("/fhir/Patient", params={"_count": 10}).json()["entry"]
    answers.append(str(patients))
    assert len(patients) == 2
    person = client.get(f"/fhir/{patient_ref}").json()
    assert person["birthDate"] == "1941" and person["gender"] == "female" and person["deceasedBoolean"] is False
    assert person["identifier"][0]["system"] == "urn:fhir-bridge:patient-id"
    conditions = client.get("/fhir/Condition", params={"subject": patient_ref}).json()["entry"]
    assert [c["resource"]["code"]["coding"][0]["code"] for c in conditions] == ["C50.4"]
    everything = client.get(f"/fhir/{patient_ref}/*", params={"_count": 100}).json()
    answers.append(str(everything))
    assert {e["resource"]["resourceType"] for e in everything["entry"]} >= {
        "ImagingStudy",
        "DiagnosticReport",
        "Condition",
        "Observation",
    }
    stored = database_text(database_url)
    for secret in SECRETS:
        assert secret not in stored, f"{secret} is in the database"
        assert not any(secret in answer for answer in answers), f"{secret} was answered"


def test_hl7_v2_results_land_on_the_patient_of_the_same_issuer(client):
    _stow(client, 1, PATIENTS[0], issuer="HOSP")
    body = (EXAMPLES / "radiology-report.hl7").read_bytes()
    waiting = client.post(
        "/ingest/clinical",
        params={"mapping": "radiology-report-hl7v2"},
        content=body,
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    ).json()
    assert [r["status"] for r in waiting["records"]] == ["created", "created"]  # the second waits for its study
    _stow(client, 2, PATIENTS[1], issuer="HOSP")  # it names no ZDS: linked by accession when the study arrives
    result = _ingest(
        client, "radiology-report-hl7v2", (EXAMPLES / "radiology-report.hl7").read_bytes(), "x-application/hl7-v2+er7"
    )
    assert [r["status"] for r in result["records"]] == ["unchanged", "unchanged"]
    study = client.get("/fhir/ImagingStudy").json()["entry"][0]["resource"]
    bundle = client.get(
        "/fhir/DiagnosticReport",
        params={"subject": study["subject"]["reference"], "_include": "DiagnosticReport:imaging-study"},
    ).json()
    report = bundle["entry"][0]["resource"]
    assert report["status"] == "final" and report["issued"] == "2024-03-05T14:30:00+01:00"
    assert report["conclusion"] == "Suspicious for malignancy (BI-RADS 5) & biopsy advised."
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["DiagnosticReport", "ImagingStudy"]
    patients = [e["resource"] for e in client.get("/fhir/Patient").json()["entry"]]
    assert len(patients) == 2
    assert {p["identifier"][0]["system"] for p in patients} == {"urn:fhir-bridge:patient-id:HOSP"}
    again = _ingest(
        client, "radiology-report-hl7v2", (EXAMPLES / "radiology-report.hl7").read_bytes(), "x-application/hl7-v2+er7"
    )
    assert [r["status"] for r in again["records"]] == ["unchanged", "unchanged"]
