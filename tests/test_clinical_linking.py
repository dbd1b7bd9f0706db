"""Linking clinical records to imaging studies (issue 14, part 5), on SQLite and PostgreSQL.

Accession numbers repeat across patients, so a report links the study of its own patient; a report
naming a study of another patient is refused; a report that arrives before its images is kept and
linked, by the DICOM side of the write path, when the study arrives.
"""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from fhir_bridge.ingest.links import AWAITING
from tests.dicom_samples import Patient, instance, multipart, uid

BOUNDARY = "linking"
ALICE = Patient("LINK-A", "Alpha^Alice", "19600101", "F")
BOB = Patient("LINK-B", "Beta^Bob", "19610202", "M")
COLUMNS = [  # every column the mapping reads (a header without one is refused)
    "report_id",
    "patient_id",
    "accession_number",
    "study_instance_uid",
    "status",
    "exam_datetime",
    "exam_description",
    "report_datetime",
    "conclusion",
    "conclusion_snomed",
    "conclusion_display",
    "language",
    "report_text",
]


def _issuer(local: str | None = None, universal: str | None = None) -> Sequence:
    item = Dataset()
    if local:
        item.LocalNamespaceEntityID = local
    if universal:
        item.UniversalEntityID, item.UniversalEntityIDType = universal, "ISO"
    return Sequence([item])


def _stow(client: TestClient, study: int, patient: Patient, accession: str, **attributes: object) -> dict:
    parts = [
        instance(
            "CT_small.dcm",
            patient=patient,
            study_uid=uid(700, study),
            series_uid=uid(700, study, 1),
            sop_uid=uid(700, study, 1, 1),
            AccessionNumber=accession,
            **attributes,
        )
    ]
    response = client.post(
        "/dicomweb/studies",
        content=multipart(parts, BOUNDARY),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    assert response.status_code == 200, response.text
    (study_resource,) = [
        s for s in _all(client, "ImagingStudy") if s["identifier"][0]["value"] == f"urn:oid:{uid(700, study)}"
    ]
    return study_resource


def _reports(client: TestClient, *rows: dict[str, str]) -> dict:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {"status": "F", "exam_datetime": "2024-05-01T10:00:00+02:00", "exam_description": "CT chest", **row}
        )
    response = client.post(
        "/ingest/clinical",
        params={"mapping": "radiology-report"},
        content=out.getvalue(),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _all(client: TestClient, resource_type: str, **parameters: str) -> list[dict]:
    bundle = client.get(f"/fhir/{resource_type}", params={"_count": "100", **parameters}).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_an_accession_number_shared_by_two_patients_links_the_study_of_the_records_patient(client):
    _stow(client, 1, ALICE, "ACC-SHARED")
    bobs = _stow(client, 2, BOB, "ACC-SHARED")
    result = _reports(client, {"report_id": "R1", "patient_id": BOB.patient_id, "accession_number": "ACC-SHARED"})
    assert [r["status"] for r in result["records"]] == ["created"], result
    (report,) = _all(client, "DiagnosticReport")
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{bobs['id']}"}]
    assert report["subject"] == bobs["subject"]


def test_a_report_naming_a_study_of_another_patient_is_refused_with_the_reason(client):
    _stow(client, 3, ALICE, "ACC-ALICE")
    by_uid = {"report_id": "R2", "patient_id": BOB.patient_id, "study_instance_uid": uid(700, 3)}
    by_accession = {"report_id": "R3", "patient_id": BOB.patient_id, "accession_number": "ACC-ALICE"}
    result = _reports(client, by_uid, by_accession)
    assert [r["status"] for r in result["records"]] == ["failed", "failed"]
    assert result["records"][0]["errors"] == [
        {
            "column": "study_instance_uid",
            "reason": "the ImagingStudy with this StudyInstanceUID is of another patient than the record's",
        }
    ]
    assert "accession number is of another patient" in result["records"][1]["errors"][0]["reason"]
    assert _all(client, "DiagnosticReport") == []


def test_a_report_before_its_images_is_kept_and_linked_when_the_study_arrives(client):
    row = {"report_id": "R4", "patient_id": ALICE.patient_id, "accession_number": "ACC-LATER"}
    first = _reports(client, row, {"report_id": "R5", "patient_id": BOB.patient_id, "study_instance_uid": uid(700, 5)})
    assert [r["status"] for r in first["records"]] == ["created", "created"]
    waiting = {r["identifier"][0]["value"]: r for r in _all(client, "DiagnosticReport")}
    assert len(waiting) == 2
    tagged = _all(client, "DiagnosticReport", _tag=f"{AWAITING}|")
    assert len(tagged) == 2  # both wait: found by their tag, as the DICOM side finds them
    for report in tagged:  # a logical reference: the study as the DICOM path stores its identifier
        (logical,) = report["imagingStudy"]
        assert logical["type"] == "ImagingStudy" and "reference" not in logical
    codes = sorted(t["code"].split(":")[0] for r in tagged for t in r["meta"]["tag"])
    assert codes == ["accession", "uid"]
    # Alice's study arrives (STOW-RS): her report is linked in the study's transaction.
    study = _stow(client, 4, ALICE, "ACC-LATER")
    alice_report = _all(client, "DiagnosticReport", subject=study["subject"]["reference"])
    assert len(alice_report) == 1
    assert alice_report[0]["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert "tag" not in alice_report[0].get("meta", {})
    assert alice_report[0]["meta"]["versionId"] == "2"
    provenance = _all(client, "Provenance", target=f"DiagnosticReport/{alice_report[0]['id']}")
    assert any("DICOM ingest" in p["activity"]["text"] for p in provenance)
    # the same export pushed again is unchanged: the link reads as if the report had come after the images
    again = _reports(client, row)
    assert [r["status"] for r in again["records"]] == ["unchanged"]
    # Bob's report still waits; a study with its UID but of another patient does not take it
    _stow(client, 5, ALICE, "ACC-OTHER")
    bobs = _all(client, "DiagnosticReport", _tag=f"{AWAITING}|uid:{uid(700, 5)}")
    assert len(bobs) == 1 and "reference" not in bobs[0]["imagingStudy"][0]


def test_the_issuer_of_accession_number_qualifies_the_stored_accession_and_links_still_follow_the_patient(client):
    alices = _stow(client, 6, ALICE, "ACC-7", IssuerOfAccessionNumberSequence=_issuer(local="RIS_NORTH"))
    bobs = _stow(client, 7, BOB, "ACC-7", IssuerOfAccessionNumberSequence=_issuer(universal="1.2.3.4.5"))
    accession = next(i for i in alices["identifier"] if i.get("type"))
    assert accession["system"] == "urn:fhir-bridge:accession-issuer:RIS_NORTH"
    assert accession["value"] != "ACC-7"  # keyed-hashed, as without an issuer
    assert next(i for i in bobs["identifier"] if i.get("type"))["system"] == "urn:oid:1.2.3.4.5"
    # the same accession number of two issuers and two patients: each report finds its own patient's study
    result = _reports(
        client,
        {"report_id": "R6", "patient_id": ALICE.patient_id, "accession_number": "ACC-7"},
        {"report_id": "R7", "patient_id": BOB.patient_id, "accession_number": "ACC-7"},
    )
    assert [r["status"] for r in result["records"]] == ["created", "created"]
    links = {r["subject"]["reference"]: r["imagingStudy"][0]["reference"] for r in _all(client, "DiagnosticReport")}
    assert links == {
        alices["subject"]["reference"]: f"ImagingStudy/{alices['id']}",
        bobs["subject"]["reference"]: f"ImagingStudy/{bobs['id']}",
    }
