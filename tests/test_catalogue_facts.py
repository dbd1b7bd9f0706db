"""The studies' facts the write path keeps (``study_fact``) give the catalogue exactly the figures the
versioned index gave (``tests/catalogue_reference.py``, the computation they replace), on the same
data: after loading, after updates, deletes, re-creations and a failed transaction, and after an
erasure; and the migration that fills them from an existing store gives the rows the write path
would have written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from fhir_bridge import Settings, create_app
from fhir_bridge.catalogue.statistics import Criterion, Statistics
from fhir_bridge.cli import main
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.schema import STUDY_FACTS
from fhir_bridge.store.store import Store
from tests.catalogue_data import BREAST, BREAST_CANCER, CHEST, DCM, SNOMED, transaction
from tests.catalogue_reference import IndexStatistics
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.store_consistency import assert_study_facts_kept

SEGMENT = "urn:fhir-bridge:StructureDefinition:segment"
ALGORITHM_TYPES = "urn:fhir-bridge:CodeSystem:segment-algorithm-type"
LESION, LIVER = "52988006", "10200004"
QUERIES: list[tuple[list[Criterion], str | None]] = [
    ([], None),
    ([], "modality"),
    ([], "bodypart"),
    ([], "manufacturer"),
    ([], "sex"),
    ([], "condition"),
    ([], "segmentation"),
    ([("modality", ["CT"])], None),
    ([("modality", [f"{DCM}|MR", "CT"])], "bodypart"),
    ([("modality", ["MR"]), ("modality", ["CT"])], None),
    ([("sex", ["female"]), ("modality", ["MR"])], "bodypart"),
    ([("sex", ["male"])], "manufacturer"),
    ([("condition", [BREAST_CANCER])], "modality"),
    ([("manufacturer", ["siemens", "GE MEDICAL SYSTEMS"])], "sex"),
    ([("bodypart", [BREAST]), ("sex", ["female"])], "condition"),
    ([("segmentation", [f"{SNOMED}|{LESION}"])], "modality"),
    ([("segmentation", [LIVER, LESION]), ("modality", ["CT"])], "segmentation"),
]


def _segment(number: int, structure: str, method: str, observation: str) -> dict[str, Any]:
    return {
        "url": SEGMENT,
        "extension": [
            {"url": "number", "valueInteger": number},
            {"url": "type", "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": structure}]}},
            {"url": "algorithmType", "valueCoding": {"system": ALGORITHM_TYPES, "code": method}},
            {"url": "observation", "valueReference": {"reference": f"Observation/{observation}"}},
        ],
    }


def _annotated(study_id: str, patient: str, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """A CT study of ``patient`` whose SEG instance carries ``segments``."""
    return {
        "resourceType": "ImagingStudy",
        "id": study_id,
        "status": "available",
        "subject": {"reference": f"Patient/{patient}"},
        "started": "2024-03-01T08:00:00Z",
        "series": [
            {
                "uid": f"1.2.9.{study_id[1:]}.1",
                "modality": {"system": DCM, "code": "CT"},
                "bodySite": {"system": SNOMED, "code": CHEST},
                "instance": [
                    {"uid": f"1.2.9.{study_id[1:]}.1.1", "sopClass": {"code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}},
                ],
            },
            {
                "uid": f"1.2.9.{study_id[1:]}.2",
                "modality": {"system": DCM, "code": "SEG"},
                "instance": [
                    {
                        "uid": f"1.2.9.{study_id[1:]}.2.1",
                        "sopClass": {"code": "urn:oid:1.2.840.10008.5.1.4.1.1.66.4"},
                        "extension": segments,
                    }
                ],
            },
        ],
    }


def _finding(observation_id: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": SNOMED, "code": LESION}]},
    }


@pytest.fixture
def loaded(database_url: str) -> Iterator[tuple[TestClient, Store]]:
    settings = Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=3)
    app = create_app(settings)
    with TestClient(app) as http:
        assert http.post("/fhir", json=transaction()).status_code == 200
        for i, patient in enumerate(("p1", "p2", "p3", "p4")):
            _put(http, _finding(f"o{i}", patient))
            segments = [_segment(1, LESION, "AUTOMATIC", f"o{i}")]
            if i % 2:
                segments.append(_segment(2, LIVER, "MANUAL", f"o{i}"))
            _put(http, _annotated(f"a{i}", patient, segments))
        yield http, app.state.services.store
    app.state.services.close()


def _put(http: TestClient, resource: dict[str, Any]) -> None:
    response = http.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


def _assert_same_as_the_index(store: Store, database_url: str) -> None:
    kept, reference = Statistics(store), IndexStatistics(store)
    assert kept.collect() == reference.collect()
    for criteria, stratify in QUERIES:
        subjects, studies, strata = kept.counts(criteria, stratify)
        expected_subjects, expected_studies, expected_strata = reference.counts(criteria, stratify)
        assert (subjects, studies) == (expected_subjects, expected_studies), (criteria, stratify)
        assert sorted(strata, key=repr) == sorted(expected_strata, key=repr), (criteria, stratify)
    assert_study_facts_kept(database_url)  # (the catalogue's studies are not DICOM-complete: no full check)


def test_the_kept_facts_give_the_figures_of_the_index_after_a_load(loaded, database_url):
    http, store = loaded
    _assert_same_as_the_index(store, database_url)
    statistics = Statistics(store).collect()
    assert (statistics.studies, statistics.study_subjects, statistics.annotated) == (17, 12, (4, 4))
    assert http.get("/catalogue/counts", params={"segmentation": LESION}).json()["subjects"] == 4


def test_the_kept_facts_follow_updates_deletes_recreations_and_failed_transactions(loaded, database_url):
    http, store = loaded
    study = http.get("/fhir/ImagingStudy/s1").json()
    study["series"][0]["modality"]["code"] = "CT"  # a study changes its modality and its subject
    study["subject"]["reference"] = "Patient/p9"
    _put(http, study)
    patient = http.get("/fhir/Patient/p5").json()
    _put(http, {**patient, "gender": "male", "birthDate": "1931"})  # a subject's sex and age change
    _put(http, {"resourceType": "Device", "id": "ge", "manufacturer": "Siemens"})  # a maker renamed
    _put(
        http,
        {
            "resourceType": "Condition",
            "id": "c9",
            "subject": {"reference": "Patient/p9"},
            "code": {"coding": [{"system": SNOMED, "code": BREAST_CANCER}]},
        },
    )
    annotated = http.get("/fhir/ImagingStudy/a1").json()  # a study loses its segments
    annotated["series"][1]["instance"][0].pop("extension")
    _put(http, annotated)
    assert http.delete("/fhir/ImagingStudy/s3").status_code in (200, 204)
    assert http.delete("/fhir/ImagingStudy/s4").status_code in (200, 204)
    recreated = http.get("/fhir/ImagingStudy/s4/_history/1").json()
    recreated.pop("meta")
    _put(http, recreated)  # deleted, then created again
    failed = {  # an update and a dangling reference: the transaction fails, nothing of it is kept
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**study, "subject": {"reference": "Patient/p2"}},
                "request": {"method": "PUT", "url": "ImagingStudy/s1"},
            },
            {"resource": _annotated("a9", "nobody", []), "request": {"method": "PUT", "url": "ImagingStudy/a9"}},
        ],
    }
    assert http.post("/fhir", json=failed).status_code >= 400
    _assert_same_as_the_index(store, database_url)
    assert Statistics(store).collect().annotated == (3, 3)


def test_the_kept_facts_follow_an_erasure(loaded, database_url):
    http, store = loaded
    before = Statistics(store).collect()
    erased = http.post("/fhir/Patient/p1/$erase")  # p1: a study of its own and an annotated one
    assert erased.status_code == 200, erased.text
    _assert_same_as_the_index(store, database_url)
    after = Statistics(store).collect()
    assert (after.studies, after.study_subjects, after.annotated) == (
        before.studies - 2,
        before.study_subjects - 1,
        (before.annotated[0] - 1, before.annotated[1] - 1),
    )


def test_the_upgrade_fills_the_facts_the_write_path_keeps(loaded, database_url):
    _http, store = loaded
    columns = [STUDY_FACTS.c[name] for name in ("res_pk", "param", "system", "code", "subject", "started")]
    engines = create_engines(database_url)
    try:
        with engines.reader.connect() as connection:
            written = sorted(connection.execute(select(*columns)).all(), key=repr)
        with engines.writer.begin() as connection:  # back to the revision before the facts, without them
            connection.execute(STUDY_FACTS.delete())
            connection.execute(text("UPDATE alembic_version SET version_num = 'r0003'"))
        assert main(["db", "upgrade", "--database-url", database_url]) == 0
        prepare_schema(engines)  # at head: nothing more to do
        with engines.reader.connect() as connection:
            filled = sorted(connection.execute(select(*columns)).all(), key=repr)
    finally:
        engines.dispose()
    assert filled == written
    assert len(written) > 17
    _assert_same_as_the_index(store, database_url)
