"""Tier 3: the EUCAIM CDM export, checked with EUCAIM's own DDL and Focus's own counting query.

Each test creates the CDM in a fresh PostgreSQL database with EUCAIM/etl-toolset's DDL (tests/data/eucaim),
exports the store into it, and runs the SQL that Samply Focus's eucaim_sql backend builds (assembled from
its fragments exactly as src/eucaim_sql.rs does, tests/data/focus/eucaim_sql.json): its counts must equal
the EUCAIM search API's for the same criteria. The store runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import main
from fhir_bridge.eucaim.cdm import export_cdm
from fhir_bridge.eucaim.concepts import HYPERONTOLOGY, shipped
from fhir_bridge.eucaim.federated import Dataset
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.eucaim_data import PATIENTS, resources, study_uid, transaction

DATA = Path(__file__).parent / "data"
DDL = (DATA / "eucaim" / "3_init_eucaim_cdm_output.sql").read_text(encoding="utf-8")
FOCUS = {name: json.loads((DATA / "focus" / f"eucaim_{name}.json").read_text()) for name in ("api", "sql")}
SCHEMA = "eucaim_cdm_output"
# Focus-expressible questions (at most one value per category); "gender=other" is apart: see below
QUERIES = [
    "",
    "gender=female",
    "gender=male",
    "gender=unknown",
    "diagnosis=SNOMEDCT254837009",
    "diagnosis=SNOMEDCT399068003",
    "diagnosis=SNOMEDCT363358000",
    "diagnosis=SNOMEDCT363406005",
    "diagnosis=SNOMEDCT363484005",
    "modality=MR",
    "modality=CT",
    "modality=PET",
    "modality=SPECT",
    "bodyPart=breast",
    "bodyPart=lung",
    "bodyPart=pelvis",
    "bodyPart=prostate",
    "manufacturer=Siemens",
    "manufacturer=General%20Electric",
    "manufacturer=Philips",
    "manufacturer=Toshiba",
    "modality=CT&manufacturer=Siemens",
    "gender=female&modality=MR&bodyPart=breast&manufacturer=Siemens",
    "gender=male&diagnosis=SNOMEDCT399068003&modality=MR&bodyPart=prostate&manufacturer=Philips",
    "gender=male&diagnosis=SNOMEDCT399068003&modality=MR",
    "diagnosis=SNOMEDCT363484005&modality=CT",  # a subject without such a study
    "gender=female&diagnosis=SNOMEDCT363358000",  # nobody
]


def focus_sql(conditions: list[tuple[str, str]]) -> str:
    """The SQL Focus's eucaim_sql backend builds for AST conditions (key, value), as src/eucaim_sql.rs does."""
    sql = FOCUS["sql"]
    criteria = {0: "", 1: ""}
    for key, value in conditions:
        category, snippet, code = (
            sql["criterion_category"].get(key),
            sql["criterion_snippet"].get(key),
            sql["criterion"].get(value),
        )
        if category is None or snippet is None or code is None:
            continue  # Focus skips what it does not know
        if criteria[category]:
            criteria[category] += " AND "
        criteria[category] += snippet.replace("?", code)
    image = f" AND ({criteria[1]})" if criteria[1] else ""
    patient = f" AND ({criteria[0]})" if criteria[0] else ""
    return sql["before_image_criteria"] + image + sql["between_criteria"] + patient + sql["after_patient_criteria"]


def conditions_of(query: str) -> list[tuple[str, str]]:
    """Focus's AST conditions behind an EUCAIM API query (its eucaim_api tables read backwards)."""
    categories = {parameter: key for key, parameter in FOCUS["api"]["category"].items()}
    values: dict[str, str] = {}
    for key, value in FOCUS["api"]["criterion"].items():
        values.setdefault(value.replace("%20", " "), key)
    found = []
    for part in filter(None, query.split("&")):
        parameter, value = part.split("=")
        found.append((categories[parameter], values[value.replace("%20", " ")]))
    return found


def test_focus_sql_is_assembled_as_focus_builds_it() -> None:
    tests = FOCUS["sql"]["tests"]
    assert focus_sql([]) == tests["SQL_NO_CRITERIA_SELECTED"]
    assert focus_sql([tuple(c) for c in tests["JUST_RIGHT_AST_CONDITIONS"]]) == tests["JUST_RIGHT_SQL"]
    assert conditions_of(
        "gender=male&diagnosis=SNOMEDCT399068003&modality=MR&bodyPart=breast&manufacturer=Philips"
    ) == [tuple(c) for c in tests["JUST_RIGHT_AST_CONDITIONS"]]


@pytest.fixture
def cdm(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database holding the EUCAIM CDM, created by EUCAIM's DDL as it is."""
    name = f"cdm_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(DDL)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def node(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=1))
    with TestClient(app) as client:
        assert client.post("/fhir", json=transaction()).status_code == 200
        app.state.services.store.refresh_statistics()  # planner statistics, as a node in use has them
        yield client
    app.state.services.close()


def _export(node: TestClient, cdm: str, **options: Any):  # type: ignore[no-untyped-def]
    services = node.app.state.services  # type: ignore[attr-defined]
    return export_cdm(
        services.store,
        cdm,
        Dataset.of(services.catalogue_config),
        Pseudonymiser(TEST_PSEUDONYM_KEY.encode()),
        remap_uids=False,
        focus_compat=True,
        **options,
    )


def _focus_counts(cdm: str, query: str) -> list[tuple[str, int, int]]:
    engine = create_engine(cdm)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SET search_path TO {SCHEMA}")
            rows = connection.exec_driver_sql(focus_sql(conditions_of(query))).all()
    finally:
        engine.dispose()
    return [(row.id, row.subjects_count, row.studies_count) for row in rows]


def _api_counts(node: TestClient, query: str) -> list[tuple[str, int, int]]:
    answer = node.get(f"/eucaim/search?{query}")
    assert answer.status_code == 200, answer.text
    return [(c["id"], c["subjects_count"], c["studies_count"]) for c in answer.json()["collections"]]


def _assert_focus_agrees(node: TestClient, cdm: str, queries: list[str]) -> None:
    for query in queries:
        focus, api = _focus_counts(cdm, query), _api_counts(node, query)
        if api:
            assert focus == api, query
        else:  # the API leaves out what rests on nobody (threshold 1); Focus lists a dataset with 0 studies
            assert all(studies == 0 for _, _, studies in focus), (query, focus)


def test_focus_counts_on_the_cdm_equal_the_eucaim_api(node: TestClient, cdm: str) -> None:
    report = _export(node, cdm)
    assert (report.full, report.patients_written, report.studies) == (True, 13, 14)
    _assert_focus_agrees(node, cdm, QUERIES)
    assert _focus_counts(cdm, "diagnosis=SNOMEDCT363484005&modality=CT") == [("fhir-bridge", 1, 0)]
    # Focus's SQL has no CDM code for "other" (it compares with ''): the node's API still answers it
    assert _focus_counts(cdm, "gender=other") == []
    assert _api_counts(node, "gender=other") == [("fhir-bridge", 1, 1)]


def _cdm_rows(cdm: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(cdm)
    try:
        with engine.connect() as connection:
            return {
                table: [dict(r._mapping) for r in connection.exec_driver_sql(f"SELECT * FROM {SCHEMA}.{table}")]
                for table in ("dataset", "patient", "cancer_condition", "procedure", "image_study", "image_series")
            }
    finally:
        engine.dispose()


def test_the_cdm_holds_offsets_concept_codes_and_pseudonyms_only(node: TestClient, cdm: str) -> None:
    _export(node, cdm)
    rows = _cdm_rows(cdm)
    engine = create_engine(cdm)
    with engine.connect() as connection:
        date_columns = connection.exec_driver_sql(
            "SELECT table_name, column_name FROM information_schema.columns "
            f"WHERE table_schema = '{SCHEMA}' AND data_type = 'date'"
        ).all()
        for table, column in date_columns:  # never an absolute date
            assert connection.exec_driver_sql(f"SELECT count({column}) FROM {SCHEMA}.{table}").scalar_one() == 0
    engine.dispose()
    # no identifier of the store or of the hospital: FHIR ids, original UIDs
    text_values = {str(v) for table in rows.values() for row in table for v in row.values() if v is not None}
    store_ids = {r["id"] for r in resources()}
    uids = {study_uid(i, j) for i, (_, _, studies) in enumerate(PATIENTS) for j in range(len(studies))}
    assert not text_values & (store_ids | uids)
    assert not any(uid in value for value in text_values for uid in uids)
    assert all(re.fullmatch("[0-9a-f]{64}", p["patient_id"]) for p in rows["patient"])
    assert all(s["study_uid"].startswith("2.25.") for s in rows["image_study"])
    # concept codes as the CDM (and Focus's SQL) expects them
    assert sorted({p["patient_birth_sex"] for p in rows["patient"]}, key=str) == [
        "COM1000177",
        "COM1000180",
        "COM1001289",
        None,  # e8 "other" has no CDM code; e13 has no gender
    ]
    assert {c["cancer_condition_code"] for c in rows["cancer_condition"]} == {
        "CLIN1000057",
        "CLIN1000060",
        "CLIN1000065",
        "CLIN1000075",
        "CLIN1000087",
        None,  # e11's unmapped diagnosis
    }
    assert {s["series_modality"] for s in rows["image_series"]} == {
        "IMG1000038",
        "IMG1000026",
        "IMG1004451",
        "IMG1004450",
        None,  # US
    }
    assert {s["series_manufacturer"] for s in rows["image_series"]} == {
        "IMG1000044",
        "IMG1000046",
        "IMG1000047",
        "IMG1000045",
    }
    assert "IMG1016670" in {s["series_body_side_laterality"] for s in rows["image_series"]}  # e1's left breast
    assert all(s["series_body_site_code"] == s["series_body_side_code"] for s in rows["image_series"])
    # offsets from the first diagnosis: days where DECIMAL(5,2) holds them, else weeks
    offsets = sorted((float(s["study_offset_from_diagnosis"]), s["study_offset_unit"]) for s in rows["image_study"])
    assert (10.42, "d") in offsets  # e0's MR, 10 days and 10 hours after diagnosis (a date: midnight UTC)
    assert (229.20, "wk") in offsets  # e0's CT, 1604.42 days after: too many for DECIMAL(5,2)
    assert (734.42, "d") in offsets  # e5's CT: from the first diagnosis (prostate, 2017), not the lung one
    ages = {float(c["cancer_condition_age_at_diagnosis"]) for c in rows["cancer_condition"]}
    assert 69.0 in ages  # e0: born 1950, diagnosed 2020
    assert rows["dataset"] == [
        {
            "dataset_id": "fhir-bridge",
            "dataset_title": "fhir-bridge imaging dataset",
            "dataset_description": "DICOM imaging studies and related clinical data of one hospital, as FHIR R4 "
            "resources.",
        }
    ]


def test_the_export_is_incremental_and_idempotent(node: TestClient, cdm: str) -> None:
    first = _export(node, cdm)
    assert first.full and first.patients_written == 13
    again = _export(node, cdm)
    assert (again.full, again.from_seq, again.patients_written, again.patients_deleted) == (
        False,
        first.to_seq,
        0,
        0,
    )
    assert _cdm_rows(cdm) == _cdm_rows(cdm)  # nothing moved
    # a new subject with a diagnosis and a study: only it is written
    new = [
        {"resourceType": "Patient", "id": "n1", "gender": "female", "birthDate": "1970"},
        {
            "resourceType": "Condition",
            "id": "n1c0",
            "subject": {"reference": "Patient/n1"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
            "onsetDateTime": "2024-01-01",
        },
        {
            "resourceType": "ImagingStudy",
            "id": "n1s0",
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.999"}],
            "subject": {"reference": "Patient/n1"},
            "started": "2024-01-02T08:00:00Z",
            "series": [
                {
                    "uid": "1.2.3.999.1",
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"},
                    "bodySite": {"system": "http://snomed.info/sct", "code": "76752008"},
                    "performer": [{"actor": {"reference": "Device/siemens"}}],
                }
            ],
        },
    ]
    assert node.post("/fhir", json=transaction(new)).status_code == 200
    added = _export(node, cdm)
    assert (added.full, added.patients_written, added.studies) == (False, 1, 1)
    _assert_focus_agrees(node, cdm, ["", "gender=female&modality=MR&bodyPart=breast&manufacturer=Siemens"])
    assert _focus_counts(cdm, "")[0][1:] == (14, 15)
    # a Device renamed: the patients whose studies it performed are rewritten
    assert node.put("/fhir/Device/toshiba", json={"resourceType": "Device", "id": "toshiba", "manufacturer": "Canon"})
    renamed = _export(node, cdm)
    assert renamed.patients_written == 1  # e5
    assert _focus_counts(cdm, "manufacturer=Toshiba") == [("fhir-bridge", 14, 0)]
    # a study deleted
    assert node.delete("/fhir/ImagingStudy/e9s0").status_code in (200, 204)
    removed = _export(node, cdm)
    assert (removed.patients_written, removed.studies) == (1, 0)
    _assert_focus_agrees(node, cdm, QUERIES)
    # the site changes its concept map: the dataset is rewritten with it
    hyper = json.loads(json.dumps(shipped(HYPERONTOLOGY)))
    next(g for g in hyper["group"] if g["source"].endswith("/DCM"))["element"].append(
        {"code": "US", "target": [{"code": "IMG1000038", "equivalence": "inexact", "comment": "a test mapping"}]}
    )
    assert node.put(f"/fhir/ConceptMap/{hyper['id']}", json=hyper).status_code in (200, 201)
    remapped = _export(node, cdm)
    assert remapped.full and remapped.patients_written == 14
    _assert_focus_agrees(node, cdm, ["modality=MR", "bodyPart=breast&modality=MR"])


def test_the_command_exports_and_refuses_a_database_without_the_cdm(
    node: TestClient, cdm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_url = node.app.state.services.settings.database_url  # type: ignore[attr-defined]
    arguments = ["export", "eucaim-cdm", "--to", cdm, "--database-url", store_url, "--focus-compat"]
    assert main(arguments) == 0
    assert "full export" in capsys.readouterr().out
    assert main(arguments) == 0
    assert "0 patients written" in capsys.readouterr().out
    assert main([*arguments[:3], cdm, "--schema", "elsewhere", *arguments[4:]]) == 2
    assert "create it with EUCAIM's DDL" in capsys.readouterr().err
