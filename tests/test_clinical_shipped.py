"""The shipped mappings for real-shaped exports ingest their samples with every value in place, as valid R4:
a German RIS report export, a tumour-registry export (ICD-10-GM, ICD-O-3, TNM as one string, grading) and
HL7 v2 ORU^R01 laboratory and radiology results (the normative ORU^R01 shape)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from fhir_bridge.mapping.clinical import MappingRegistry
from fhir_bridge.spec.validation import validate_resource
from tests.dicom_samples import Patient, instance, multipart

DATA = Path(__file__).parent / "data" / "clinical"
SHIPPED = Path(__file__).parent.parent / "mappings"
NEW_MAPPINGS = ("radiology-report-ris-de", "tumour-registry", "oru-r01-results")
BOUNDARY = "shipped-mappings"


def _ingest(client: TestClient, mapping: str, sample: str, content_type: str) -> dict:
    response = client.post(
        "/ingest/clinical",
        params={"mapping": mapping},
        content=(DATA / sample).read_bytes(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["summary"]["failed"] == 0, answer["records"]
    return answer


def _all(client: TestClient, resource_type: str, **params: str) -> list[dict]:
    bundle = client.get(f"/fhir/{resource_type}", params={"_count": 100, **params}).json()
    return [entry["resource"] for entry in bundle.get("entry", []) if entry["search"]["mode"] == "match"]


def _valid_r4(client: TestClient) -> list[dict]:
    """Every stored resource, each checked by our R4 validator."""
    everything = []
    for kind in ("Patient", "Condition", "Observation", "DiagnosticReport", "ImagingStudy", "Provenance"):
        for resource in _all(client, kind):
            validate_resource(resource, kind)
            everything.append(resource)
    return everything


def _stow(client: TestClient, patient: Patient, study_uid: str, accession: str) -> None:
    part = instance(
        "CT_small.dcm",
        patient=patient,
        study_uid=study_uid,
        series_uid=f"{study_uid}.1",
        sop_uid=f"{study_uid}.1.1",
        AccessionNumber=accession,
    )
    response = client.post(
        "/dicomweb/studies",
        content=multipart([part], BOUNDARY),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    assert response.status_code == 200, response.text


def _text(report: dict) -> str:
    return base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")


@pytest.mark.parametrize("name", NEW_MAPPINGS)
def test_the_shipped_mappings_are_short_and_check_clean(name):
    path = SHIPPED / f"{name}.yaml"
    assert len(path.read_text(encoding="utf-8").splitlines()) < 150
    assert MappingRegistry.for_site().check(path) == []


def test_a_german_ris_export_becomes_reports_linked_to_their_studies(client):
    for pid, uid, accession in (
        ("P-0201", "1.2.826.0.1.3680043.10.1234.117", "ACC000117"),
        ("P-0202", "1.2.826.0.1.3680043.10.1234.118", "ACC000118"),
        ("P-0203", "1.2.826.0.1.3680043.10.1234.119", "ACC000119"),
    ):
        _stow(client, Patient(pid, "Testperson^X", "19580704", "F"), uid, accession)
    _ingest(client, "radiology-report-ris-de", "ris-befunde.csv", "application/vnd.ms-excel")
    reports = {r["presentedForm"][0]["title"] + r["code"]["text"]: r for r in _all(client, "DiagnosticReport")}
    assert len(reports) == 3
    ct, mr, mg = (
        reports["BefundCT Thorax mit KM"],
        reports["BefundMRT Schädel nativ"],
        reports["BefundMammographie beidseits"],
    )
    assert (ct["status"], mr["status"], mg["status"]) == ("final", "preliminary", "corrected")
    assert ct["category"][0]["coding"][1] == {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
    assert ct["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
    ]
    assert ct["effectiveDateTime"] == "2024-04-02T14:30:00+02:00" and ct["issued"] == "2024-04-02T16:05:00+02:00"
    assert mg["issued"] == "2024-04-05T08:00:00+02:00" and "issued" not in mr
    assert ct["conclusion"] == "Tumorverdächtiger Rundherd rechts; PET-CT empfohlen."
    assert _text(ct) == (
        "CT Thorax mit Kontrastmittel.\nBefund: 21 mm großer Rundherd im rechten Oberlappen, keine "
        "Lymphknotenvergrößerung."
    )
    assert ct["presentedForm"][0]["language"] == "de"
    stored = {s["id"]: s for s in _all(client, "ImagingStudy")}
    for report in (ct, mr, mg):  # mr by its accession number alone (no Study-Instance-UID in the row)
        study = stored[report["imagingStudy"][0]["reference"].split("/")[1]]
        assert study["subject"] == report["subject"]  # the same pseudonymised Patient as the DICOM
    assert len({r["imagingStudy"][0]["reference"] for r in (ct, mr, mg)}) == 3
    answered = str(_valid_r4(client))
    for secret in ("P-0201", "Testperson", "Dr. Beispiel", "04.07.1958", "B-24-000117"):
        assert secret not in answered


def test_a_tumour_registry_export_becomes_conditions_with_tnm_grading_and_size(client):
    _ingest(client, "tumour-registry", "tumour-registry.csv", "text/csv")
    conditions = {c["code"]["coding"][0]["code"]: c for c in _all(client, "Condition")}
    breast, lung, colon = conditions["C50.4"], conditions["C34.1"], conditions["C18.7"]
    assert breast["code"]["coding"][0] == {
        "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
        "version": "2024",
        "code": "C50.4",
    }
    assert breast["bodySite"][0]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/icd-o-3", "code": "C50.4"}
    ]
    assert breast["bodySite"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "7771000"
    assert lung["bodySite"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["display"] == "Right"
    assert "extension" not in colon["bodySite"][0]  # side T (not applicable): no laterality
    assert breast["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "8500/3"
    assert (breast["onsetDateTime"], lung["onsetDateTime"], colon["onsetDateTime"]) == (
        "2024-03-12",
        "2024-03-15",
        "2024-03",
    )

    def staged(condition: dict) -> dict[str, tuple]:
        found = {}
        for observation in _all(client, "Observation", focus=f"Condition/{condition['id']}"):
            code = observation["code"]["coding"][0]["code"]
            value = observation.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code")
            quantity = observation.get("valueQuantity", {})
            found[code] = (value or quantity.get("value"), observation.get("method", {}).get("text"))
        return found

    assert staged(breast) == {
        "21899-0": ("pT2", "pathological"),
        "21900-6": ("pN1a", "pathological"),
        "21907-1": ("cM0", "clinical"),
        "33732-9": ("G2", None),
        "21889-1": (23.5, None),
    }
    assert staged(lung) == {
        "21905-5": ("cT3", "clinical"),
        "21906-3": ("cN0", "clinical"),
        "21907-1": ("cM0", "clinical"),
        "33732-9": ("G3", None),
        "21889-1": (41, None),
    }
    assert staged(colon) == {
        "21899-0": ("ypT2", "pathological"),
        "21900-6": ("ypN0", "pathological"),
        "21907-1": ("cM0", "clinical"),
        "33732-9": ("H", None),
    }
    assert len(breast["stage"][0]["assessment"]) == 3
    answered = str(_valid_r4(client))
    assert "Testperson" not in answered and "P-0101" not in answered


def test_oru_r01_lab_results_become_reports_with_one_observation_per_obx(client):
    _ingest(client, "oru-r01-results", "oru-r01-lab.hl7", "x-application/hl7-v2+er7")
    reports = {r["code"]["coding"][0]["code"]: r for r in _all(client, "DiagnosticReport")}
    glucose, panel = reports["1558-6"], reports["58410-2"]
    assert glucose["code"]["coding"][0]["system"] == "http://loinc.org"
    assert (glucose["status"], glucose["category"][0]["coding"][0]["code"]) == ("final", "CH")
    assert (
        glucose["effectiveDateTime"] == "2024-02-15T07:30:00+01:00" and glucose["issued"] == "2024-02-15T09:25:00+01:00"
    )
    assert panel["conclusion"] == "Sample slightly haemolysed."  # no impression: the NTE
    assert glucose["subject"] == panel["subject"]
    observations = {o["id"]: o for o in _all(client, "Observation")}
    [sugar] = [observations[r["reference"].split("/")[1]] for r in glucose["result"]]
    assert sugar["valueQuantity"] == {
        "value": 182,  # ^182: the structured numeric's number, not its empty comparator
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert sugar["interpretation"][0]["coding"][0]["code"] == "H"
    assert sugar["referenceRange"][0]["low"]["value"] == 70 and sugar["referenceRange"][0]["high"]["value"] == 105
    assert sugar["effectiveDateTime"] == "2024-02-15T07:30:00+01:00"
    assert sugar["category"][0]["coding"][0]["code"] == "laboratory"
    values = [observations[r["reference"].split("/")[1]] for r in panel["result"]]
    assert [(o["code"]["coding"][0]["code"], o["valueQuantity"]["value"]) for o in values] == [
        ("718-7", 13.2),
        ("6690-2", 11.8),
        ("1988-5", 0.5),
    ]
    assert (
        values[2]["valueQuantity"]["comparator"] == "<" and values[1]["interpretation"][0]["coding"][0]["code"] == "H"
    )
    assert values[0]["referenceRange"][0] == {
        "low": {"value": 12.0, "unit": "g/dL"},
        "high": {"value": 16.0, "unit": "g/dL"},
        "text": "12.0-16.0",
    }
    answered = str(_valid_r4(client))
    assert "Testperson" not in answered and "PID-00011" not in answered and "X99887766" not in answered


def test_oru_r01_radiology_results_become_a_report_on_its_study_with_its_measurement(client):
    _stow(
        client,
        Patient("PID-00012", "Testperson^Rad1", "19580704", "M", "HOSP"),
        "1.2.826.0.1.3680043.10.1234.42",
        "ACC000042",
    )
    _ingest(client, "oru-r01-results", "oru-r01-radiology.hl7", "x-application/hl7-v2+er7")
    [report] = _all(client, "DiagnosticReport")
    [study] = _all(client, "ImagingStudy")
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert report["subject"] == study["subject"]  # PID-3 with its issuer HOSP: the DICOM's patient
    assert report["category"][0]["coding"][0]["code"] == "RAD" and report["code"]["text"] == "CT Thorax mit KM"
    assert report["conclusion"] == "Tumorverdächtiger Rundherd rechts; PET-CT empfohlen."
    assert _text(report) == (
        "CT Thorax mit Kontrastmittel.\nBefund: 21 mm Rundherd im rechten Oberlappen.\n"
        "Tumorverdächtiger Rundherd rechts; PET-CT empfohlen."
    )
    [size] = _all(client, "Observation")
    assert report["result"] == [{"reference": f"Observation/{size['id']}"}]
    assert size["code"]["coding"][0]["code"] == "33728-7" and size["category"][0]["coding"][0]["code"] == "imaging"
    assert size["valueQuantity"] == {"value": 21, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}
    _valid_r4(client)
    again = client.post(
        "/ingest/clinical",
        params={"mapping": "oru-r01-results"},
        content=(DATA / "oru-r01-radiology.hl7").read_bytes(),
        headers={"Content-Type": "x-application/hl7-v2+er7"},
    ).json()
    assert again["summary"]["unchanged"] == 1  # re-sent: nothing duplicated
    assert orjson.dumps(_all(client, "Observation")) == orjson.dumps([size])
