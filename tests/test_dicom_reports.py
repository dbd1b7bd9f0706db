"""DICOM structured reports -> DiagnosticReport + Observations; Key Object Selection -> key images as Media.

SRs made by highdicom (a TID 1500 measurement report, a KOS, as AI tools emit them) and pydicom's real
Basic Text and Comprehensive SR files: mapped header-only, de-identified (free text only when descriptions
are kept), valid R4, and over STOW-RS and folder ingest findable by search on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import csv
import io
from zoneinfo import ZoneInfo

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr._concepts_dict import concepts

from fhir_bridge import Settings
from fhir_bridge.dicom.reader import read_stream
from fhir_bridge.dicom.structured import MAX_DEPTH
from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.mapping import DicomMapper, MappingConfig
from fhir_bridge.mapping.codes import resource_id
from fhir_bridge.mapping.report import report_status
from fhir_bridge.mapping.study_context import DICOM_UID
from fhir_bridge.privacy import AttributePolicy, Pseudonymiser
from fhir_bridge.spec.validation import validate_resource
from tests.annotation_samples import FREE_TEXT_SECRETS, LESION, LIVER, SNOMED, annotated_study, real_file, text_report
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import multipart, sample_path, uid, write_tree

DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
WADO = "https://pacs.hospital.example/dicom-web"
CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'


def _mapper(keep_descriptions: bool = False) -> DicomMapper:
    policy = AttributePolicy(Pseudonymiser(b"report-test-site-secret-0123456789"), keep_descriptions=keep_descriptions)
    return DicomMapper(policy, MappingConfig("urn:fhir-bridge:patient-id", WADO, ZoneInfo("Europe/Madrid")))


def _derived(data: bytes, keep_descriptions: bool = False) -> dict[str, dict]:
    """The resources an instance adds, each validated as R4, by "Type/id"."""
    mapper = _mapper(keep_descriptions)
    resources = mapper.study([mapper.deidentify(read_stream(io.BytesIO(data)))])
    validate_resource(resources.study, "ImagingStudy")
    return {f"{r['resourceType']}/{r['id']}": validate_resource(r, r["resourceType"]) for r in resources.derived}


def _one(resources: dict[str, dict], resource_type: str) -> dict:
    found = [r for r in resources.values() if r["resourceType"] == resource_type]
    assert len(found) == 1, found
    return found[0]


def _codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def test_a_measurement_report_becomes_a_report_with_grouped_measurements_of_a_tracked_finding():
    study = annotated_study(1)
    resources = _derived(study.sr)
    report = _one(resources, "DiagnosticReport")
    assert _codes(report["code"]) == {(DCM, "126000")}  # Imaging Measurement Report, the document title
    assert report["status"] == "final"  # complete, verified, final
    assert report["identifier"] == [{"system": DICOM_UID, "value": f"urn:oid:{uid(800, 1, 3, 1)}"}]
    assert report["effectiveDateTime"].startswith("2004-01-19")  # the imaging, not the report's writing
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{resource_id('ImagingStudy', study.study_uid)}"}]
    assert report["meta"]["security"][0]["code"] == "PSEUDED"
    assert "conclusion" not in report and "presentedForm" not in report  # no free text by default

    (group_reference,) = report["result"]
    group = resources[group_reference["reference"]]
    assert _codes(group["code"]) == {(DCM, "125007")}  # Measurement Group
    assert _codes(group["valueCodeableConcept"]) == {(SNOMED, LESION)}  # the Finding
    assert (SNOMED, "49755003") in {c for category in group["category"] for c in _codes(category)}
    assert _codes(group["bodySite"]) == {(SNOMED, LIVER)}  # the Finding Site
    assert group["derivedFrom"] == report["imagingStudy"]
    members = [resources[m["reference"]] for m in group["hasMember"]]
    diameter = next(m for m in members if "valueQuantity" in m)
    assert _codes(diameter["code"]) == {(SNOMED, "81827009")}
    assert diameter["valueQuantity"] == {"value": 23.5, "unit": "mm", "system": UCUM, "code": "mm"}
    assert _codes(diameter["method"]) == {(DCM, "126410")}  # RECIST 1.1
    (derivation,) = diameter["component"]
    assert _codes(derivation["code"]) == {(DCM, "121401")} and _codes(derivation["valueCodeableConcept"]) == {
        (SNOMED, "255573006")
    }
    assert _codes(diameter["bodySite"]) == {(SNOMED, LIVER)}  # inherited from its group
    evaluation = next(m for m in members if "valueCodeableConcept" in m)
    assert evaluation["valueCodeableConcept"]["text"] == "Present"  # an NCIt code: no FHIR system known

    tracked = _one(resources, "BodyStructure")  # the lesion, by its Tracking UID: the same in the SEG
    assert {"reference": f"BodyStructure/{tracked['id']}"} in group["focus"] and diameter["focus"] == group["focus"]
    assert tracked["identifier"] == [
        {
            "type": {"coding": [{"system": DCM, "code": "112040", "display": "Tracking Unique Identifier"}]},
            "system": DICOM_UID,
            "value": f"urn:oid:{study.tracking_uid}",
        }
    ]
    assert _codes(tracked["morphology"]) == {(SNOMED, LESION)} and _codes(tracked["location"]) == {(SNOMED, LIVER)}
    assert all(r["subject"] == report["subject"] for r in resources.values() if "subject" in r)


def test_report_text_is_dropped_by_default_and_kept_with_descriptions(tmp_path):
    data = text_report(annotated_study(1).patient, 1)
    dropped = _derived(data)
    report = _one(dropped, "DiagnosticReport")
    assert "conclusion" not in report and "presentedForm" not in report
    assert not [s for s in FREE_TEXT_SECRETS if s in str(dropped)]
    assert "Diameter" in str(dropped)  # the coded content stays: a NUM item of the text report

    kept = _one(_derived(data, keep_descriptions=True), "DiagnosticReport")
    assert kept["conclusion"] == "Liver lesion, Pemberflint to follow up"  # the Impression
    (form,) = kept["presentedForm"]
    text = base64.b64decode(form["data"]).decode("utf-8")
    assert form["contentType"] == "text/plain; charset=utf-8" and form["title"] == "Diagnosis"
    assert "Pemberflint Quelldorf shows a mass of" in text and "Diameter: 3" in text


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        ({"CompletionFlag": "COMPLETE", "VerificationFlag": "VERIFIED"}, "final"),
        ({"CompletionFlag": "COMPLETE", "VerificationFlag": "UNVERIFIED"}, "preliminary"),
        ({"CompletionFlag": "PARTIAL", "VerificationFlag": "VERIFIED"}, "partial"),
        (
            {"CompletionFlag": "COMPLETE", "VerificationFlag": "VERIFIED", "PreliminaryFlag": "PRELIMINARY"},
            "preliminary",
        ),
        ({}, "unknown"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.59"}, "final"),  # a KOS has no flags: a selection is final
    ],
)
def test_the_report_status_follows_the_document_flags(flags, status):
    assert report_status({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.22", **flags}) == status


def test_key_images_become_the_media_of_a_report():
    study = annotated_study(1)
    resources = _derived(study.ko)
    report = _one(resources, "DiagnosticReport")
    assert _codes(report["code"]) == {(DCM, "113000")}  # Of Interest
    assert report["status"] == "final" and "conclusion" not in report
    (link,) = report["media"]
    media = resources[link["link"]["reference"]]
    ct = uid(800, 1, 1, 1)
    assert media["identifier"] == [{"system": DICOM_UID, "value": f"urn:oid:{ct}"}]
    assert media["partOf"] == report["imagingStudy"]
    assert media["content"] == {
        "contentType": "application/dicom",
        "url": f"{WADO}/studies/{uid(800, 1)}/series/{uid(800, 1, 1)}/instances/{ct}",
    }
    kept = _one(_derived(study.ko, keep_descriptions=True), "DiagnosticReport")
    assert kept["conclusion"] == "Pemberflint asked for this image"  # the Key Object Description


def test_real_basic_text_and_comprehensive_sr_files_are_mapped():
    patient = annotated_study(1).patient
    basic = _derived(real_file("reportsi.dcm", patient, 1))  # Basic Text SR, partial, unverified
    report = _one(basic, "DiagnosticReport")
    assert report["status"] == "partial" and report["code"] == {"text": "Document Title"}  # a private scheme
    assert "result" not in report  # text and image references only
    assert "Last Name" not in str(basic)  # the referring physician; PNAME items are never read

    comprehensive = _derived(real_file("test-SR.dcm", patient, 2))
    report = _one(comprehensive, "DiagnosticReport")
    assert report["status"] == "final" and report["issued"] == "2001-02-13T18:47:46+01:00"  # verified, site zone
    values = [o["valueQuantity"]["value"] for o in comprehensive.values() if "valueQuantity" in o]
    assert values == [3, 3]  # the NUM items of its two sections


def test_a_content_tree_nested_too_deep_is_left_out_whole():
    dataset = pydicom.dcmread(sample_path("test-SR.dcm"))
    node = dataset
    for _ in range(MAX_DEPTH + 2):
        child = Dataset()
        child.RelationshipType, child.ValueType = "CONTAINS", "CONTAINER"
        node.ContentSequence = [child]
        node = child
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    instance = read_stream(io.BytesIO(buffer.getvalue()))
    assert "ContentSequence" in instance.defects and "ContentSequence" not in instance.attributes
    assert "result" not in _one(_derived(buffer.getvalue()), "DiagnosticReport")


def test_the_sr_concept_table_matches_the_standard():
    from importlib.resources import files

    text = files("fhir_bridge.mapping").joinpath("data/sr_concepts.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t"))
    assert rows
    for row in rows:
        meanings = {
            m for entries in concepts[row["designator"]].values() for c, (m, _) in entries.items() if c == row["code"]
        }
        assert row["meaning"] in meanings, row


# over HTTP and folders, on both databases -----------------------------------------------------------------
@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, wado_rs_base_url=WADO)


def _search(client, resource_type: str, **params: str) -> list[dict]:
    response = client.get(f"/fhir/{resource_type}", params={"_count": "200", **params})
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def test_reports_arrive_by_stow_and_by_folder_and_are_found_by_search(app, client, tmp_path):
    study = annotated_study(1)
    stow = client.post(
        "/dicomweb/studies", content=multipart([study.ct, study.sr, study.ko]), headers={"Content-Type": CONTENT_TYPE}
    )
    assert stow.status_code == 200, stow.text
    write_tree(
        tmp_path / "export",
        iter(
            [
                ("a/text.dcm", text_report(study.patient, 1)),
                ("b/basic.dcm", real_file("reportsi.dcm", study.patient, 3)),
            ]
        ),
    )
    summary = ingest_files(app.state.services.dicom_ingest, [tmp_path / "export"], workers=1)
    assert summary.instances == 2 and not summary.failed

    (imaging,) = _search(client, "ImagingStudy", identifier=f"urn:dicom:uid|urn:oid:{study.study_uid}")
    reports = _search(client, "DiagnosticReport", **{"imaging-study": f"ImagingStudy/{imaging['id']}"})
    assert sorted(_codes(r["code"]).pop()[1] for r in reports) == ["113000", "126000"]
    assert len(_search(client, "DiagnosticReport")) == 4  # and the two real files'
    measured = _search(client, "Observation", code=f"{SNOMED}|81827009", **{"value-quantity": f"gt20|{UCUM}|mm"})
    assert len(measured) == 1 and measured[0]["derivedFrom"] == [{"reference": f"ImagingStudy/{imaging['id']}"}]
    report = next(r for r in reports if "result" in r)
    included = _search(client, "DiagnosticReport", _id=report["id"], _include="DiagnosticReport:result")
    assert {r["resourceType"] for r in included} == {"DiagnosticReport", "Observation"}
    assert len(_search(client, "Observation", focus=measured[0]["focus"][0]["reference"])) == 3  # the group, 2 members
    key_images = _search(client, "Media", identifier=f"urn:dicom:uid|urn:oid:{uid(800, 1, 1, 1)}")
    assert len(key_images) == 1

    versions = {r["id"]: r["meta"]["versionId"] for r in _search(client, "Observation")}
    again = client.post(
        "/dicomweb/studies", content=multipart([study.sr, study.ko]), headers={"Content-Type": CONTENT_TYPE}
    )
    assert again.status_code == 200
    assert {r["id"]: r["meta"]["versionId"] for r in _search(client, "Observation")} == versions  # no new version


def test_a_dicomweb_client_stores_a_report(live_server):
    from dicomweb_client.api import DICOMwebClient

    study = annotated_study(2)
    client = DICOMwebClient(url=live_server.removesuffix("/fhir") + "/dicomweb")
    client.store_instances([pydicom.dcmread(io.BytesIO(data)) for data in (study.ct, study.sr)])
    bundle = httpx.get(f"{live_server}/DiagnosticReport", params={"code": f"{DCM}|126000"}).json()
    assert len(bundle["entry"]) == 1
