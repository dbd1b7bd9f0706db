"""`fhir-bridge db copy --to postgresql+psycopg://...`: an embedded SQLite store moves to PostgreSQL with
every version, its seq and lastUpdated, so that harvesters' `_since` positions carry on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from fhir_bridge import Settings, create_app
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.cli import main
from fhir_bridge.services import Services
from fhir_bridge.store.schema import INDEX_TABLES, RESOURCE, VERSION
from fhir_bridge.store.versions import format_instant
from tests.bulk_client import run_export
from tests.dicom_samples import Patient, instance, multipart, uid

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'


@pytest.fixture
def postgres_target(postgres_server: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _rows(database_url: str, statement, *, audit: bool = False) -> list[tuple]:
    services = Services.from_settings(Settings(database_url=database_url))
    engines = services.audit_database if audit else services.database
    with services, engines.reader.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]


def _history(http: TestClient, since: str) -> list[tuple]:
    bundle = http.get("/fhir/_history", params={"_since": since, "_count": 1000}).json()
    return [(e["request"]["method"], e["fullUrl"], e.get("resource")) for e in bundle["entry"]]


def test_a_sqlite_store_copied_to_postgresql_keeps_every_version_and_the_commit_sequence(
    tmp_path: Path, postgres_target: str, capsys
):
    sqlite = f"sqlite:///{tmp_path / 'store.db'}"
    source = create_app(Settings(database_url=sqlite))
    patient = Patient("PID-COPY-1", "Copy^Carla", "19700101")
    parts = [
        instance("CT_small.dcm", patient=patient, study_uid=uid(77), series_uid=uid(77, r), sop_uid=uid(77, r, i))
        for r in (1, 2)
        for i in (1, 2)
    ]
    with TestClient(source) as http:
        assert (
            http.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": STOW_TYPE}).status_code
            == 200
        )
        subject = http.get("/fhir/ImagingStudy").json()["entry"][0]["resource"]["subject"]["reference"]
        since = http.get(f"/fhir/{subject}").json()["meta"]["lastUpdated"]
        observation = {
            "resourceType": "Observation",
            "status": "preliminary",
            "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
            "effectiveDateTime": "2024-03-01T10:00:00Z",
            "valueQuantity": {"value": 37.2, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
        }
        created = http.post("/fhir/Observation", json=observation).json()
        http.put(f"/fhir/Observation/{created['id']}", json={**created, "status": "final"})
        condition = http.post("/fhir/Condition", json={"resourceType": "Condition", "subject": {"reference": subject}})
        http.delete(f"/fhir/Condition/{condition.json()['id']}")
        harvested = _history(http, since)
        searched = http.get("/fhir/Observation", params={"date": "2024-03", "subject": subject}).json()["entry"]
        assert len(searched) == 1
    source.state.services.close()

    assert main(["db", "copy", "--database-url", sqlite, "--to", postgres_target]) == 0
    assert "commit sequence kept" in capsys.readouterr().out

    for table in (RESOURCE, VERSION, *INDEX_TABLES.values()):
        order = select(table).order_by(*table.primary_key.columns)
        assert _rows(postgres_target, order) == _rows(sqlite, order), table.name
    assert len(_rows(postgres_target, select(VERSION))) >= 8  # STOW-RS and clinical writes
    audit = select(AUDIT).order_by(AUDIT.c.id)
    assert _rows(postgres_target, audit, audit=True) == _rows(sqlite, audit, audit=True) != []

    target = create_app(Settings(database_url=postgres_target))
    with TestClient(target) as http:
        assert _history(http, since) == harvested  # the same versions, seqs and lastUpdated
        assert http.get("/fhir/Observation", params={"date": "2024-03", "subject": subject}).json()["entry"] == searched
        last = max(version[6] for version in _rows(postgres_target, select(VERSION)))
        newer = http.post("/fhir/Observation", json=observation)  # pks and the clock go on past the copied ones
        assert newer.status_code == 201
        seq = _rows(postgres_target, select(VERSION.c.seq, VERSION.c.last_updated).order_by(VERSION.c.seq.desc()))[0]
        assert seq[0] == len(_rows(sqlite, select(VERSION))) + 1 and seq[1] > last
        after = _history(http, since)  # a harvester's next `_since` poll gets the new write and nothing else
        assert [entry for entry in after if entry not in harvested] == [
            ("POST", f"http://testserver/fhir/Observation/{newer.json()['id']}", newer.json())
        ]
        # and a bulk harvester's `_since` (exclusive) from the last version it had on SQLite
        newest = format_instant(last)
        export = run_export(http, f"/fhir/$export?_since={newest.replace('+', '%2B')}")
        exported = [json.loads(line)["id"] for line in export.lines()]
        assert exported == [newer.json()["id"]]
    target.state.services.close()


def test_a_copy_into_a_database_that_holds_resources_is_refused(tmp_path: Path, postgres_target: str, capsys):
    sqlite = f"sqlite:///{tmp_path / 'store.db'}"
    for url in (sqlite, postgres_target):
        app = create_app(Settings(database_url=url))
        with TestClient(app) as http:
            http.post("/fhir/Patient", json={"resourceType": "Patient"})
        app.state.services.close()
    assert main(["db", "copy", "--database-url", sqlite, "--to", postgres_target]) == 2
    assert "copy into an empty database" in capsys.readouterr().err
