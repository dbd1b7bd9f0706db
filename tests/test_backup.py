"""`fhir-bridge db backup` / `db restore`: online backups of the store and its audit trail, restored
into an empty database identical up to the backup's commit; keys never in the file, a restore under
another pseudonym key refused."""

from __future__ import annotations

import json
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from fhir_bridge import Settings, create_app
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.cli import main
from fhir_bridge.services import Services, token_key_path
from fhir_bridge.store.tables import CLOCK, INFO, VERSION
from tests.conftest import TEST_PSEUDONYM_KEY

OTHER_KEY = "another-site-secret-0123456789abcdef-0123456789"


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database to restore into: another SQLite file, or another PostgreSQL database with a
    schema of the same name as the test's (a restore keeps the backup's schema name)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'store.db'}"
        return
    name = f"fb_restore_{uuid.uuid4().hex[:10]}"
    schema = url.query["options"].split("=")[-1]
    admin = create_engine(url.set(query={}), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    target = url.set(database=name)
    created = create_engine(target.set(query={}))
    with created.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    created.dispose()
    yield target.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def _rows(database_url: str, statement, *, audit: bool = False) -> list[tuple]:
    services = Services.from_settings(Settings(database_url=database_url))
    engines = services.audit_database if audit else services.database
    with services, engines.reader.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]


def _versions(database_url: str, up_to: int | None = None) -> list[tuple]:
    statement = select(VERSION).order_by(VERSION.c.seq)
    return _rows(database_url, statement if up_to is None else statement.where(VERSION.c.seq <= up_to))


def _clock(database_url: str) -> int:
    return _rows(database_url, select(CLOCK.c.seq))[0][0]


def _audit(database_url: str) -> list[tuple]:
    return _rows(database_url, select(AUDIT).order_by(AUDIT.c.id), audit=True)


def _observation(subject: str, value: float) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "valueQuantity": {"value": value, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"},
    }


def test_a_backup_made_while_writing_restores_into_an_empty_database_identical_up_to_its_commit(
    database_url, empty_database, tmp_path, capsys
):
    settings = Settings(database_url=database_url, auth="smart")
    app = create_app(settings)
    services = app.state.services
    services.token_issuer  # noqa: B018 (makes the token signing key file)
    services.ui_session_secret  # noqa: B018 (a secret kept in the database)
    with services.database.reader.connect() as connection:
        secrets = [
            value
            for key, value in connection.execute(select(INFO.c.key, INFO.c.value))
            if "secret" in key or "key" in key
        ]
    assert len(secrets) == 2  # the cursor and UI session keys
    key_file = json.loads(token_key_path(settings).read_text())
    secrets += [key["private_key"] for key in key_file["keys"]]
    http = TestClient(create_app(Settings(database_url=database_url)))
    patient = http.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}).json()
    changed = http.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": "other"})
    assert changed.status_code == 200
    since = changed.json()["meta"]["lastUpdated"]
    for value in range(5):
        http.post("/fhir/Observation", json=_observation(f"Patient/{patient['id']}", 36 + value))

    stop = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:
        while not stop.is_set():
            created = http.post("/fhir/Observation", json=_observation(f"Patient/{patient['id']}", 38.5))
            written.append(created.status_code)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 3:
            stop.wait(0.01)
        backup = tmp_path / "site.backup"
        assert main(["db", "backup", str(backup), "--database-url", database_url]) == 0
        during = len(written)
        while len(written) < during + 3:  # and writes went on after it
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    assert set(written) == {201}
    assert "keys by fingerprint only" in capsys.readouterr().out
    archive = backup.read_bytes()
    assert all(secret.encode() not in archive for secret in secrets)
    with tarfile.open(backup) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["keys"]["token_signing_keys"] == [key["kid"] for key in key_file["keys"]]
    assert manifest["keys"]["pseudonym_key"].startswith("hmac-sha256:")

    assert main(["db", "restore", str(backup), "--database-url", empty_database]) == 0
    restored_to = _clock(empty_database)
    assert restored_to < _clock(database_url)  # the backup is of a moment, the source went on
    assert _versions(empty_database) == _versions(database_url, up_to=restored_to)
    restored_audit = _audit(empty_database)
    assert restored_audit and restored_audit == _audit(database_url)[: len(restored_audit)]

    restored = create_app(Settings(database_url=empty_database))
    with TestClient(restored) as again:
        assert again.get(f"/fhir/Patient/{patient['id']}").json()["gender"] == "other"
        history = again.get("/fhir/_history", params={"_since": since}).json()
        assert len(history["entry"]) == restored_to - 1  # every version from the update on
        assert again.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
    with restored.state.services.database.reader.connect() as connection:
        keys = dict(connection.execute(select(INFO.c.key, INFO.c.value)).all())
    assert "cursor_secret" in keys and keys["cursor_secret"] not in secrets  # a new one, made on start
    restored.state.services.close()
    app.state.services.close()


def test_a_restore_under_another_pseudonym_key_is_refused_unless_forced(database_url, empty_database, tmp_path, capsys):
    source = create_app(Settings(database_url=database_url))
    with TestClient(source) as http:
        http.post("/fhir/Patient", json={"resourceType": "Patient"})
    source.state.services.close()
    backup = tmp_path / "site.backup"
    assert main(["db", "backup", str(backup), "--database-url", database_url]) == 0
    key_file = tmp_path / "other.key"
    key_file.write_text(OTHER_KEY)
    other = ["--database-url", empty_database, "--pseudonym-key-file", str(key_file)]
    assert main(["db", "restore", str(backup), *other]) == 2
    assert "another pseudonym key" in capsys.readouterr().err
    with Services.from_settings(Settings(database_url=empty_database)) as services:
        assert not services.schema_state().populated  # nothing was restored
    assert main(["db", "restore", str(backup), *other, "--force"]) == 0
    assert len(_versions(empty_database)) == 1


def test_a_restore_into_a_database_that_holds_a_store_is_refused(database_url, tmp_path, capsys):
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    app.state.services.close()
    backup = tmp_path / "site.backup"
    assert main(["db", "backup", str(backup), "--database-url", database_url]) == 0
    assert main(["db", "restore", str(backup), "--database-url", database_url]) == 2
    assert "restore into an empty database" in capsys.readouterr().err
