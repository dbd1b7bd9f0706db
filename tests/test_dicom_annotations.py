"""Segmentations (SEG) and RT structure sets (RTSTRUCT) as findable annotations, and their privacy.

SEGs made by highdicom and pydicom's real SEG and RTSTRUCT files: recorded on the ImagingStudy's
series and as an Observation per segment, found by a real FHIR client (fhirpy) over HTTP with the
cohort query of docs/annotations.md, counted by the catalogue under the small-count rule, and never
storing a name, identifier or free text of the source: on SQLite and PostgreSQL, by STOW-RS (the
DICOMweb client dicomweb-client) and by folder ingest.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from fhirpy import SyncFHIRClient
from rdflib import Graph, Namespace, URIRef

from fhir_bridge import Settings, create_app
from fhir_bridge.dicom.reader import read_stream
from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.mapping import DicomMapper, MappingConfig
from fhir_bridge.mapping.annotation import SEGMENT_EXTENSION, SEGMENTED_SERIES_EXTENSION
from fhir_bridge.mapping.codes import resource_id
from fhir_bridge.privacy import AttributePolicy, Pseudonymiser
from fhir_bridge.spec.validation import validate_resource
from tests.annotation_samples import (
    ALGORITHM_TYPES,
    FREE_TEXT_SECRETS,
    KIDNEY,
    LESION,
    LIVER,
    NEOPLASM,
    SNOMED,
    annotated_study,
    coded_rtstruct,
    real_file,
    text_report,
)
from tests.conftest import TEST_PSEUDONYM_KEY, serving
from tests.dicom_samples import Patient, instance, uid, write_tree
from tests.test_dicom_privacy import _database_text, _leaks

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EUCAIM = Namespace("https://hyperontology.eucaim.cancerimage.eu/#")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
LIVER_LESION = f"{SNOMED}|{LESION}${SNOMED}|{LIVER}"


def _mapped(data: bytes, keep_descriptions: bool = False, remap_uids: bool = False) -> tuple[dict, dict[str, dict]]:
    """The ImagingStudy fragment and the derived resources of one instance, validated as R4."""
    secret = Pseudonymiser(b"annotation-test-secret-0123456789")
    policy = AttributePolicy(secret, keep_descriptions=keep_descriptions, remap_uids=remap_uids)
    mapper = DicomMapper(policy, MappingConfig("urn:fhir-bridge:patient-id", None, ZoneInfo("UTC")))
    resources = mapper.study([mapper.deidentify(read_stream(io.BytesIO(data)))])
    derived = {f"{r['resourceType']}/{r['id']}": validate_resource(r, r["resourceType"]) for r in resources.derived}
    return validate_resource(resources.study, "ImagingStudy"), derived


def _entry(study: dict) -> dict:
    (series,) = study["series"]
    (instance_entry,) = series["instance"]
    return instance_entry


def _parts(extension: dict) -> dict:
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value")) for part in extension["extension"]}


def _codes(concept: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept.get("coding", [])}


def test_a_segmentation_is_recorded_on_its_series_and_as_an_observation_per_segment():
    study = annotated_study(1)
    imaging, derived = _mapped(study.seg)
    entry = _entry(imaging)
    segment, series = entry["extension"]
    assert segment["url"] == SEGMENT_EXTENSION
    assert series == {"url": SEGMENTED_SERIES_EXTENSION, "valueId": uid(800, 1, 1)}  # the CT series it segments
    parts = _parts(segment)
    assert parts["number"] == 1 and "label" not in parts  # the label is free text: dropped by default
    assert _codes(parts["type"]) == {(SNOMED, LESION)} and _codes(parts["region"]) == {(SNOMED, LIVER)}
    assert _codes(parts["category"]) == {(SNOMED, "49755003")}  # Morphologically Abnormal Structure
    assert parts["algorithmType"] == {"system": ALGORITHM_TYPES, "code": "AUTOMATIC", "display": "Automatic"}
    assert parts["algorithmName"] == "nnU-Net"

    observation = derived[parts["observation"]["reference"]]  # linked both ways
    assert observation["derivedFrom"] == [{"reference": f"ImagingStudy/{imaging['id']}"}]
    assert _codes(observation["code"]) == {(SNOMED, LESION)} and _codes(observation["bodySite"]) == {(SNOMED, LIVER)}
    assert (DCM, "SEG") in {c for category in observation["category"] for c in _codes(category)}
    assert _codes(observation["method"]) == {(ALGORITHM_TYPES, "AUTOMATIC")}
    device = derived[observation["device"]["reference"]]
    assert device["deviceName"] == [{"name": "nnU-Net", "type": "model-name"}] and device["version"] == [
        {"value": "2.1"}
    ]
    # the tracked lesion is the same BodyStructure the measurement report's Observations focus on
    assert observation["focus"] == [{"reference": f"BodyStructure/{resource_id('BodyStructure', study.tracking_uid)}"}]
    _, report = _mapped(study.sr)
    assert observation["focus"][0]["reference"] in report

    _, kept = _mapped(study.seg, keep_descriptions=True)
    (labelled,) = [r for r in kept.values() if r["resourceType"] == "Observation"]
    assert labelled["code"]["text"] == "Lesion of Quelldorf"  # the Segment Label, kept by configuration


def test_remapped_uids_still_link_annotations_reports_and_images():
    """With FHIR_BRIDGE_REMAP_UIDS every UID inside the structures is remapped like the instances' own."""
    study = annotated_study(1)
    ct, _ = _mapped(study.ct, remap_uids=True)
    seg, derived = _mapped(study.seg, remap_uids=True)
    (ct_series,) = ct["series"]
    segmented = [e["valueId"] for e in _entry(seg)["extension"] if e["url"] == SEGMENTED_SERIES_EXTENSION]
    assert segmented == [ct_series["uid"]] and ct_series["uid"].startswith("2.25.")
    _, report = _mapped(study.sr, remap_uids=True)
    tracked = {key for key in derived if key.startswith("BodyStructure/")}
    assert tracked and tracked <= set(report)  # the same lesion, by its remapped Tracking UID
    _, key_images = _mapped(study.ko, remap_uids=True)
    (media,) = [r for r in key_images.values() if r["resourceType"] == "Media"]
    assert media["identifier"][0]["value"] == f"urn:oid:{ct_series['instance'][0]['uid']}"
    assert uid(800, 1) not in str([seg, derived, report, key_images])  # no original UID is left


def test_real_seg_and_rtstruct_files_become_annotations():
    patient = Patient("MRN-REAL-1", "Quelldorf^Real", "19500101", "M")
    imaging, derived = _mapped(real_file("liver_1frame.dcm", patient, 40))
    (observation,) = [r for r in derived.values() if r["resourceType"] == "Observation"]
    assert _codes(observation["code"]) == {(SNOMED, LIVER)}  # coded T-62000 in SNOMED RT, given as SNOMED CT
    assert (SNOMED, "85756007") in {c for category in observation["category"] for c in _codes(category)}  # Tissue
    assert _codes(observation["method"]) == {(ALGORITHM_TYPES, "SEMIAUTOMATIC")}

    imaging, derived = _mapped(real_file("rtstruct.dcm", patient, 41))
    extensions = _entry(imaging)["extension"]
    segments = [_parts(e) for e in extensions if e["url"] == SEGMENT_EXTENSION]
    assert [s["number"] for s in segments] == [1]  # the body outline; the two isocentres are points, not volumes
    assert segments[0]["category"] == {"text": "EXTERNAL"} and segments[0]["algorithmType"]["code"] == "MANUAL"
    (observation,) = [r for r in derived.values() if r["resourceType"] == "Observation"]
    assert (DCM, "RTSTRUCT") in {c for category in observation["category"] for c in _codes(category)}
    assert [e["valueId"] for e in extensions if e["url"] == SEGMENTED_SERIES_EXTENSION] == [
        "1.2.826.0.1.3680043.8.498.2010020400001.2.1.1"
    ]
    imaging, derived = _mapped(coded_rtstruct(patient, 42))
    (observation,) = [r for r in derived.values() if r["resourceType"] == "Observation"]
    assert _codes(observation["code"]) == {(SNOMED, LIVER)}  # its RT ROI Identification Code


# over HTTP and folders, on both databases -----------------------------------------------------------------
def _cohort() -> tuple[list[bytes], list[tuple[str, bytes]], list[str]]:
    """(STOW-RS parts, folder files, identifying words) of five patients:

    1: CT + SEG of a liver lesion (automatic) + SR + KOS; 2: CT + SEG of a liver lesion (manual);
    3: CT + SEG of a liver neoplasm (automatic); 4: MR + an RTSTRUCT with the liver outlined (manual);
    5: real files by folder (SEG of the liver, semi-automatic; RTSTRUCT of the liver, manual; a text SR)."""
    one, two = annotated_study(1), annotated_study(2, algorithm="MANUAL")
    three = annotated_study(3, structure=(NEOPLASM, "Neoplasm"))
    four = Patient("MRN-QUELLDORF-4", "Quelldorf^Vexmoor4", "19700101", "M")
    mr = instance(
        "MR_small.dcm", patient=four, study_uid=uid(840, 4), series_uid=uid(840, 4, 1), sop_uid=uid(840, 4, 1, 1)
    )
    five = Patient("MRN-QUELLDORF-5", "Quelldorf^Vexmoor5", "19800101", "F")
    stow = [*one.all, two.ct, two.seg, three.ct, three.seg, mr, coded_rtstruct(four, 4)]
    files = [
        ("p5/seg.dcm", real_file("liver_1frame.dcm", five, 50)),
        ("p5/rt.dcm", coded_rtstruct(five, 51)),
        ("p5/sr.dcm", text_report(five, 52)),
    ]
    secrets = [*FREE_TEXT_SECRETS, "MRN-QUELLDORF", "ACC-QUELLDORF", "1961-02-03", "19610203"]
    return stow, files, secrets


@pytest.fixture
def cohort_app(database_url: str, tmp_path) -> Iterator[FastAPI]:
    """The app with the cohort stored: STOW-RS by dicomweb-client over HTTP, the rest by folder ingest."""
    settings = Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=2)
    app = create_app(settings)
    stow, files, _ = _cohort()
    with serving(app) as port:
        client = DICOMwebClient(url=f"http://127.0.0.1:{port}/dicomweb")
        client.store_instances([pydicom.dcmread(io.BytesIO(data)) for data in stow])
        write_tree(tmp_path / "export", iter(files))
        summary = ingest_files(app.state.services.dicom_ingest, [tmp_path / "export"], workers=1)
        assert summary.instances == len(files) and not summary.failed
        app.state.port = port
        yield app
    app.state.services.close()


def test_annotations_are_found_by_a_fhir_client_with_the_documented_cohort_query(cohort_app):
    fhir = SyncFHIRClient(f"http://127.0.0.1:{cohort_app.state.port}/fhir")
    lesions = fhir.resources("ImagingStudy").search(segmentation=f"{SNOMED}|{LESION}").fetch_all()
    assert len(lesions) == 2

    # docs/annotations.md: patients with a CT study and a segmentation of a liver lesion (in that study)
    found = (
        fhir.resources("ImagingStudy")
        .search(modality="CT", **{"segmentation-site": LIVER_LESION})
        .include("ImagingStudy", "subject")
        .fetch_raw()
    )
    patients = {e["resource"]["id"] for e in found.entry if e["resource"]["resourceType"] == "Patient"}
    studies = [e["resource"] for e in found.entry if e["resource"]["resourceType"] == "ImagingStudy"]
    assert len(studies) == 2 and {s["subject"]["reference"].split("/")[1] for s in studies} == patients
    by_patient = fhir.resources("Patient").has("ImagingStudy", "subject", **{"segmentation-site": LIVER_LESION})
    assert {p.id for p in by_patient.fetch_all()} == patients
    # a lesion elsewhere is not a liver lesion; a liver neoplasm is another structure
    elsewhere = f"{SNOMED}|{LESION}${SNOMED}|{KIDNEY}"
    assert fhir.resources("ImagingStudy").search(**{"segmentation-site": elsewhere}).count() == 0
    assert (
        fhir.resources("ImagingStudy")
        .search(segmentation=f"{SNOMED}|{NEOPLASM}", **{"segmentation-region": f"{SNOMED}|{LIVER}"})
        .count()
        == 1
    )

    liver = fhir.resources("ImagingStudy").search(segmentation=f"{SNOMED}|{LIVER}").fetch_all()
    assert len(liver) == 3  # the real SEG and the two RTSTRUCTs
    reverse = fhir.resources("ImagingStudy").search(**{"_has:Observation:derived-from:code": f"{SNOMED}|{LIVER}"})
    assert {s.id for s in reverse.fetch_all()} == {s.id for s in liver}  # the same studies, from the Observations
    assert fhir.resources("ImagingStudy").search(**{"segmentation-method": f"{ALGORITHM_TYPES}|MANUAL"}).count() == 3

    (study,) = (
        fhir.resources("ImagingStudy")
        .search(segmentation=f"{SNOMED}|{LESION}", **{"segmentation-method": "AUTOMATIC"})
        .fetch_all()
    )
    with_segments = fhir.resources("ImagingStudy").search(_id=study.id).include("ImagingStudy", "segment").fetch_raw()
    observations = [e.resource.serialize() for e in with_segments.entry if e.resource.resourceType == "Observation"]
    assert len(observations) == 1 and observations[0]["derivedFrom"] == [{"reference": f"ImagingStudy/{study.id}"}]
    segments = fhir.resources("Observation").search(
        **{"derived-from": f"ImagingStudy/{study.id}", "category": f"{DCM}|SEG"}
    )
    assert [o.id for o in segments.fetch_all()] == [observations[0]["id"]]


def test_a_repush_makes_no_new_version(cohort_app):
    fhir = SyncFHIRClient(f"http://127.0.0.1:{cohort_app.state.port}/fhir")
    before = {
        (o.resourceType, o.id): o.meta.versionId
        for t in ("Observation", "ImagingStudy", "BodyStructure")
        for o in fhir.resources(t).limit(500).fetch_all()
    }
    stow, _, _ = _cohort()
    DICOMwebClient(url=f"http://127.0.0.1:{cohort_app.state.port}/dicomweb").store_instances(
        [pydicom.dcmread(io.BytesIO(data)) for data in stow]
    )
    after = {
        (o.resourceType, o.id): o.meta.versionId
        for t in ("Observation", "ImagingStudy", "BodyStructure")
        for o in fhir.resources(t).limit(500).fetch_all()
    }
    assert after == before and len(before) > 10


def _get(app: FastAPI, path: str, **params: str) -> httpx.Response:
    response = httpx.get(f"http://127.0.0.1:{app.state.port}{path}", params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_the_catalogue_counts_annotations_under_the_small_count_rule(cohort_app):
    counts = _get(cohort_app, "/catalogue/counts", segmentation=f"{SNOMED}|{LESION}").json()
    assert (counts["subjects"], counts["studies"]) == (2, 2)
    neoplasm = _get(cohort_app, "/catalogue/counts", segmentation=NEOPLASM).json()
    assert (neoplasm["subjects"], neoplasm["studies"]) == (None, None)  # one subject: below the threshold of 2
    either = _get(cohort_app, "/catalogue/counts", segmentation=f"{LESION},{NEOPLASM}", modality="CT").json()
    assert either["subjects"] == 3
    strata = _get(cohort_app, "/catalogue/counts", stratify="segmentation").json()["strata"]
    assert {(s["code"], s["subjects"]) for s in strata} == {(LESION, 2), (LIVER, 2)}  # the neoplasm: one subject

    graph = Graph().parse(data=_get(cohort_app, "/catalogue", _format="turtle").text, format="turtle")
    (dataset,) = graph.subjects(EUCAIM.nbrOfSegmentations, None)
    assert int(graph.value(dataset, EUCAIM.nbrOfSegmentations)) == 6  # segmented studies, of 5 subjects
    labels = {URIRef(f"http://snomed.info/id/{code}") for code in (LESION, LIVER)}
    assert set(graph.objects(dataset, EUCAIM.hasAnnotationLabel)) == labels
    methods = {str(graph.value(node, SKOS.notation)) for node in graph.objects(dataset, EUCAIM.hasAlgorithmType)}
    assert methods == {"AUTOMATIC", "MANUAL"}  # 2 and 3 subjects; semi-automatic (the real SEG) has one


def test_no_name_identifier_or_free_text_of_the_sources_is_stored_or_served(cohort_app, database_url):
    _, _, secrets = _cohort()
    assert _leaks(_database_text(database_url), set(secrets)) == []
    types = ("Patient", "ImagingStudy", "DiagnosticReport", "Observation", "BodyStructure", "Media", "Device")
    served = [_get(cohort_app, "/fhir/_history", _count="1000").text]
    served += [_get(cohort_app, f"/fhir/{t}", _count="1000").text for t in (*types, "Provenance")]
    assert _leaks("\n".join(served), set(secrets)) == []
    assert "Quelldorf" not in _get(cohort_app, "/catalogue", _format="turtle").text
