"""Makes the fixture of a store written by the previous release (fhir-bridge 0.1, commit 8c78268).

Run with that release's code, not this one (the point is a database it wrote):

    git archive 8c78268 | tar -x -C /tmp/fb-0.1
    PYTHONPATH=/tmp/fb-0.1 .venv/bin/python tests/data/release-0.1/make_fixture.py tests/data/release-0.1

It writes ``store.db`` (SQLite; its audit trail ``store.audit.db`` is left out), ``postgresql.sql``
(a ``pg_dump --inserts`` of the same writes in schema ``release_0_1``) and ``expected.json``
(what tests/test_migrations.py reads back after the upgrade). Data: a STOW-RS study of one patient
(2 series x 2 instances), an Observation updated once, a Condition, and a deleted Observation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.append(str(Path(__file__).resolve().parents[3]))  # tests.dicom_samples, after the old release on PYTHONPATH

from fhir_bridge import Settings, create_app
from tests.dicom_samples import Patient, instance, multipart, uid

KEY = "fhir-bridge-test-site-secret-0123456789abcdef"  # tests/conftest.py's TEST_PSEUDONYM_KEY
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "release_0_1"


def write(database_url: str) -> dict:
    app = create_app(Settings(database_url=database_url, pseudonym_key=KEY, auth="none"))
    patient = Patient("PID-RELEASE-01", "Oldrelease^Anna", "19600304")
    parts = [
        instance(
            "CT_small.dcm",
            patient=patient,
            study_uid=uid(901),
            series_uid=uid(901, r),
            sop_uid=uid(901, r, i),
            series_number=r,
            instance_number=i,
            AccessionNumber="ACC-OLD-1",
        )
        for r in (1, 2)
        for i in (1, 2)
    ]
    with TestClient(app) as http:
        stow = http.post(
            "/dicomweb/studies",
            content=multipart(parts),
            headers={
                "Content-Type": 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
            },
        )
        assert stow.status_code == 200, stow.text
        study = http.get("/fhir/ImagingStudy").json()["entry"][0]["resource"]
        subject = study["subject"]["reference"]
        observation = {
            "resourceType": "Observation",
            "status": "preliminary",
            "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            "valueQuantity": {"value": 37.2, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
        }
        created = http.post("/fhir/Observation", json=observation).json()
        since = created["meta"]["lastUpdated"]
        updated = http.put(f"/fhir/Observation/{created['id']}", json={**created, "status": "final"}).json()
        condition = http.post(
            "/fhir/Condition",
            json={
                "resourceType": "Condition",
                "subject": {"reference": subject},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]},
            },
        ).json()
        gone = http.post("/fhir/Observation", json={**observation, "status": "cancelled"}).json()
        assert http.delete(f"/fhir/Observation/{gone['id']}").status_code in (200, 204)
        history = http.get("/fhir/_history", params={"_since": since}).json()
    app.state.services.close()
    return {
        "patient": subject,
        "study": f"ImagingStudy/{study['id']}",
        "series": len(study["series"]),
        "observation": updated["id"],
        "condition": condition["id"],
        "deleted": gone["id"],
        "since": since,
        "history_since": sorted(f"{e['request']['method']} {e['request']['url']}" for e in history["entry"]),
    }


def main(target: Path) -> None:
    import fhir_bridge.store.database

    assert hasattr(fhir_bridge.store.database, "prepare_schema"), "run with the old release first on PYTHONPATH"
    sqlite = target / "store.db"
    for old in target.glob("store*.db*"):
        old.unlink()
    expected = write(f"sqlite:///{sqlite}")
    for extra in target.glob("store.audit.db*"):
        extra.unlink()
    admin = create_engine(PG)
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    expected_pg = write(f"{PG}?options=-csearch_path%3D{SCHEMA}")
    assert expected_pg.keys() == expected.keys()
    dump = subprocess.run(
        [
            "pg_dump",
            "--inserts",
            "--no-owner",
            "--no-privileges",
            "--schema",
            SCHEMA,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "test",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PGTZ": "UTC"},
    ).stdout
    (target / "postgresql.sql").write_text(dump, encoding="utf-8")
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    (target / "expected.json").write_text(json.dumps({"sqlite": expected, "postgresql": expected_pg}, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
