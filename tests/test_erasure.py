"""GDPR erasure: `POST Patient/[id]/$erase` (scope system/Patient.erase) and `fhir-bridge patient erase`
remove a patient's compartment for good: every version, index row and bulk export holding it; the
audit trail keeps a keyed record; the catalogue and counts change at once; nothing of it is left in
the store's database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, or_, select
from sqlalchemy.engine import make_url

from fhir_bridge import Settings, create_app
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.cli import main
from fhir_bridge.security.scopes import Permission, grant_of, narrow
from fhir_bridge.store.schema import STORE_METADATA
from tests.bulk_client import run_export
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.security_helpers import bearer, ec_key

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
ANNA = Patient("PID-ERASE-A", "Erase^Anna", "19600304")
BERT = Patient("PID-KEEP-B", "Keep^Bert", "19700101")


def _stow(http: TestClient, patient: Patient, study: int) -> None:
    parts = [
        instance(
            "CT_small.dcm", patient=patient, study_uid=uid(study), series_uid=uid(study, r), sop_uid=uid(study, r, i)
        )
        for r in (1, 2)
        for i in (1, 2)
    ]
    response = http.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": STOW_TYPE})
    assert response.status_code == 200, response.text


def _patient_of(http: TestClient, patient: Patient) -> dict:
    found = http.get("/fhir/Patient").json()["entry"]
    studies = http.get("/fhir/ImagingStudy").json()["entry"]
    for entry in studies:
        if entry["resource"]["identifier"][0]["value"].endswith(uid(900 if patient is ANNA else 901)):
            subject = entry["resource"]["subject"]["reference"]
            return next(e["resource"] for e in found if f"Patient/{e['resource']['id']}" == subject)
    raise AssertionError("no study of the patient")


@pytest.fixture
def site(database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        catalogue_min_count=1,
        catalogue_cache_seconds=3600,  # the erasure must show at once all the same
    )
    app = create_app(settings)
    with TestClient(app) as http:
        _stow(http, ANNA, 900)
        _stow(http, BERT, 901)
        yield http
    app.state.services.close()


def _clinical(http: TestClient, patient_id: str) -> list[str]:
    """Clinical data of the patient, with history: the references (Type/id) written."""
    subject = {"reference": f"Patient/{patient_id}"}
    code = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}
    observation = http.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "preliminary", "subject": subject, "code": code},
    ).json()
    http.put(f"/fhir/Observation/{observation['id']}", json={**observation, "status": "final"})
    diagnosis = {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]}  # breast cancer
    kept = http.post(
        "/fhir/Condition", json={"resourceType": "Condition", "subject": subject, "code": diagnosis}
    ).json()
    condition = http.post("/fhir/Condition", json={"resourceType": "Condition", "subject": subject}).json()
    assert http.delete(f"/fhir/Condition/{condition['id']}").status_code in (200, 204)
    study = http.get("/fhir/ImagingStudy", params={"subject": f"Patient/{patient_id}"}).json()["entry"][0]["resource"]
    report = http.post(  # refers to the study only: erased as a referrer of a referrer
        "/fhir/DiagnosticReport",
        json={
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": code,
            "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
        },
    ).json()
    return [
        f"Condition/{kept['id']}",
        f"Observation/{observation['id']}",
        f"Condition/{condition['id']}",
        f"DiagnosticReport/{report['id']}",
        f"ImagingStudy/{study['id']}",
    ]


def _remnants(database_url: str, needles: list[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, needle) of the store's database whose text holds a needle."""
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    found = []
    with engine.connect() as connection:
        for table in STORE_METADATA.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            for needle in needles:
                if columns:
                    hits = connection.execute(
                        select(*columns).where(or_(*(c.contains(needle, autoescape=True) for c in columns)))
                    ).all()
                    found += [(table.name, str(hit), needle) for hit in hits]
    engine.dispose()
    return found


def test_erase_removes_the_patients_compartment_and_leaves_no_remnant(site: TestClient, database_url: str):
    http = site
    anna, bert = _patient_of(http, ANNA), _patient_of(http, BERT)
    written = _clinical(http, anna["id"])
    kept = _clinical(http, bert["id"])
    sibling = http.post(  # another record of the same person (Patient.link): erased with her
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "link": [{"other": {"reference": f"Patient/{anna['id']}"}, "type": "seealso"}],
        },
    ).json()
    export = run_export(http, "/fhir/$export")
    assert any(anna["id"] in line for lines in export.files.values() for line in lines)
    counts = http.get("/catalogue/counts").json()
    catalogue = http.get("/catalogue", headers={"Accept": "text/turtle"}).text
    assert (counts["subjects"], counts["studies"]) == (2, 2)
    assert http.get("/eucaim/search").json()["total"] == {"subjects_count": 2, "studies_count": 2}
    needles = [anna["id"], anna["identifier"][0]["value"], sibling["id"], *(ref.split("/")[1] for ref in written)]
    assert _remnants(database_url, needles)  # the scan finds them before

    erased = http.post(f"/fhir/Patient/{anna['id']}/$erase")
    assert erased.status_code == 200, erased.text
    summary = {p["name"]: p.get("valueInteger") for p in erased.json()["parameter"]}
    assert summary["resources"] >= 6 and summary["versions"] > summary["resources"] and summary["bulkExports"] == 1

    assert _remnants(database_url, needles) == []
    assert http.get(f"/fhir/Patient/{anna['id']}").status_code == 404  # not 410: no trace of a delete either
    for reference in written:
        assert http.get(f"/fhir/{reference}/_history").status_code in (404, 200)
        assert http.get(f"/fhir/{reference}").status_code == 404
    history = json.dumps(http.get("/fhir/_history", params={"_count": 1000}).json())
    assert anna["id"] not in history
    assert all(http.get(f"/fhir/{reference}").status_code in (200, 410) for reference in kept)
    assert http.get(f"/fhir/Patient/{bert['id']}").status_code == 200
    assert http.get(f"/fhir/Patient/{sibling['id']}").status_code == 404
    assert http.get(export.status_url).status_code == 404  # the export that held her is gone
    after = http.get("/catalogue/counts").json()
    assert (after["subjects"], after["studies"]) == (1, 1)
    assert http.get("/eucaim/search").json()["total"] == {"subjects_count": 1, "studies_count": 1}
    assert http.get("/catalogue", headers={"Accept": "text/turtle"}).text != catalogue

    app = http.app
    with app.state.services.audit_log.engines.reader.connect() as connection:  # type: ignore[attr-defined]
        records = connection.execute(select(AUDIT).where(AUDIT.c.path.like("%$erase"))).all()
    assert len(records) == 1 and records[0].entity is None
    assert records[0].detail.startswith("erasure of Patient/hmac:") and anna["id"] not in str(tuple(records[0]))

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":  # the file itself: no free page or WAL frame keeps her
        files = [Path(url.database or ""), Path(f"{url.database}-wal")]
        left = [
            (p.name, p.stat().st_size, n) for p in files if p.exists() for n in needles if n.encode() in p.read_bytes()
        ]
        assert left == []

    _stow(http, ANNA, 900)  # a PACS sending her study again: stored again (erasure is not a block list)
    assert http.get(f"/fhir/Patient/{anna['id']}").status_code == 200


def test_erase_needs_its_own_scope_that_no_wildcard_grants(database_url: str):
    assert not grant_of("system/*.cruds system/*.*").allows(Permission("Patient", "x"))
    assert grant_of("system/Patient.erase").allows(Permission("Patient", "x"))
    assert narrow("system/Patient.erase system/Patient.rs", "system/Patient.erase system/*.rs") == (
        "system/Patient.rs system/Patient.erase"
    )
    app = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    admin, writer = ec_key(), ec_key()
    services = app.state.services
    services.clients.add("steward", "system/Patient.erase", jwks=admin.jwks(), jwks_url=None)
    services.clients.add("writer", "system/*.cruds", jwks=writer.jwks(), jwks_url=None)
    with TestClient(app) as http:
        writing = bearer(http, "writer", writer, "system/*.cruds")
        patient = http.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=writing).json()
        refused = http.post(f"/fhir/Patient/{patient['id']}/$erase", headers=writing)
        assert refused.status_code == 403 and "system/Patient.erase" in refused.text
        steward = bearer(http, "steward", admin, "system/Patient.erase")
        assert http.post(f"/fhir/Patient/{patient['id']}/$erase", headers=steward).status_code == 200
        assert http.post(f"/fhir/Patient/{patient['id']}/$erase", headers=steward).status_code == 404
    services.close()


def test_the_command_erases_by_id_pseudonym_or_identifier(site: TestClient, database_url: str, capsys):
    http = site
    anna, bert = _patient_of(http, ANNA), _patient_of(http, BERT)
    flags = ["--database-url", database_url]
    system = anna["identifier"][0]["system"]
    assert main(["patient", "erase", "--identifier", f"{system}|{ANNA.patient_id}", *flags]) == 0
    assert capsys.readouterr().out.startswith("erasure of Patient/hmac:")
    assert http.get(f"/fhir/Patient/{anna['id']}").status_code == 404
    assert main(["patient", "erase", "--pseudonym", bert["identifier"][0]["value"], *flags]) == 0
    assert http.get(f"/fhir/Patient/{bert['id']}").status_code == 404
    assert main(["patient", "erase", bert["id"], *flags]) == 1
    assert "no Patient" in capsys.readouterr().err
