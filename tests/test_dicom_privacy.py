"""Pseudonymisation: no original identifier anywhere in the store, the API or the logs; no start without a key."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, create_engine, select

from fhir_bridge import Settings, create_app
from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.settings import ConfigurationError
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, uid, write_tree

CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
# Real files in many character sets; each gets an identifying patient, referrer, accession and description.
SOURCES = [
    ("chrJapMulti.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("chrKoreanMulti.dcm", "Hong^Gildong=洪^吉洞=홍^길동"),
    ("chrX1.dcm", "Wang^XiaoDong=王^小東="),
    ("chrX2.dcm", "Wang^XiaoDong=王^小东="),
    ("chrFren.dcm", "Buc^Jérôme"),
    ("chrGerm.dcm", "Äneas^Rüdiger"),
    ("CT_small.dcm", "Lastname^Firstname"),
    ("MR_small.dcm", "Mustermann^Erika"),
    ("JPEG2000.dcm", "Rossi^Giulia"),
    ("rtdose.dcm", "Kowalski^Jan"),
]


def _patient(number: int, name: str) -> Patient:
    return Patient(f"LEAKY-PID-{number:04d}", name, f"19{30 + number:02d}0{1 + number % 9}2{number % 10}", "F")


def _files() -> tuple[list[bytes], set[str], set[str]]:
    """Instances, the identifiers that must never be stored, and their original UIDs."""
    parts, secrets, uids = [], set(), set()
    for number, (base, name) in enumerate(SOURCES):
        patient = _patient(number, name)
        for series in (1, 2):
            study_uid, series_uid, sop_uid = uid(700, number), uid(700, number, series), uid(700, number, series, 1)
            parts.append(
                instance(
                    base,
                    patient=patient,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    sop_uid=sop_uid,
                    series_number=series,
                    AccessionNumber=f"LEAKY-ACC-{number:03d}",
                    ReferringPhysicianName="Zelinski^Quorra^Vexley",
                    StudyDescription=f"Xylophant staging of {name.split('^')[0]}",
                )
            )
            uids |= {study_uid, series_uid, sop_uid}
        birth = patient.birth_date
        secrets |= {patient.patient_id, birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", f"LEAKY-ACC-{number:03d}"}
        secrets |= {part for group in name.split("=") for part in group.split("^") if len(part) >= 2}
    secrets |= {"Zelinski", "Quorra", "Vexley", "Xylophant"}
    return parts, secrets, uids


def _database_text(database_url: str) -> str:
    """Every value of every row of every table, as text."""
    engine = create_engine(database_url)
    metadata = MetaData()
    metadata.reflect(engine)
    chunks = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                chunks.extend(str(value) for value in row)
    engine.dispose()
    return "\n".join(chunks)


def _api_text(client: TestClient) -> str:
    """Every search, read and history the FHIR API offers over what was stored."""
    texts = [client.get("/fhir/_history", params={"_count": 1000}).text, client.get("/fhir/metadata").text]
    for resource_type in ("Patient", "ImagingStudy", "Endpoint", "Device", "Provenance"):
        bundle = client.get(f"/fhir/{resource_type}", params={"_count": 1000})
        texts.append(bundle.text)
        for entry in bundle.json().get("entry", []):
            reference = f"/fhir/{resource_type}/{entry['resource']['id']}"
            texts += [client.get(reference).text, client.get(f"{reference}/_history").text]
    return "\n".join(texts)


def _leaks(text: str, secrets: set[str]) -> list[str]:
    folded = text.casefold()
    return sorted(s for s in secrets if s.casefold() in folded)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, remap_uids=True)


def test_no_identifier_reaches_the_store_the_api_or_the_logs(app, client, database_url, tmp_path, caplog):
    parts, secrets, uids = _files()
    caplog.set_level(logging.DEBUG)
    stow = client.post("/dicomweb/studies", content=multipart(parts[::2]), headers={"Content-Type": CONTENT_TYPE})
    assert stow.status_code == 200, stow.text
    tree = write_tree(tmp_path / "export", ((f"{n}.dcm", p) for n, p in enumerate(parts[1::2])))
    summary = ingest_files(app.state.services.dicom_ingest, [tmp_path / "export"], workers=1)
    assert summary.instances == len(tree) and not summary.failed
    assert client.get("/fhir/ImagingStudy", params={"_summary": "count", "_total": "accurate"}).json()["total"] == 10

    assert _leaks(_database_text(database_url), secrets | uids) == []
    if database_url.startswith("sqlite:///"):
        for path in Path(database_url.removeprefix("sqlite:///")).parent.glob("store.db*"):
            raw = path.read_bytes().decode("utf-8", errors="replace")
            assert _leaks(raw, secrets | uids) == [], path.name
    assert _leaks(_api_text(client), secrets | uids) == []
    assert _leaks(stow.text, secrets) == []  # the sender gets its own UIDs back, nothing else it sent
    assert _leaks(caplog.text, secrets | uids) == []
    study = client.get("/fhir/ImagingStudy", params={"_count": 1}).json()["entry"][0]["resource"]
    assert study["identifier"][0]["value"].startswith("urn:oid:2.25.")
    assert all(s["uid"].startswith("2.25.") for s in study["series"])


def test_the_leak_scan_finds_identifiers_when_pseudonymisation_is_off(database_url):
    """The scan of the test above can fail: with pseudonymisation off the PatientIDs are stored and served."""
    app = create_app(Settings(database_url=database_url, pseudonymise=False))
    parts, secrets, _ = _files()
    with TestClient(app) as client:
        assert client.post(
            "/dicomweb/studies", content=multipart(parts), headers={"Content-Type": CONTENT_TYPE}
        ).is_success
        api = _api_text(client)
    app.state.services.close()
    assert "LEAKY-PID-0000" in _leaks(_database_text(database_url), secrets)
    assert "LEAKY-PID-0000" in _leaks(api, secrets)
    assert {"Tarou", "Jérôme", "Erika"}.isdisjoint(_leaks(api, secrets))  # patient names are never read at all


def test_the_same_patient_is_found_again_on_every_path_and_run(app, client, settings, tmp_path):
    patient = Patient("SAME-PID-1", "Same^Person", "19700101", issuer="HOSPITAL_A")
    first = instance(
        "MR_small.dcm", patient=patient, study_uid=uid(801), series_uid=uid(801, 1), sop_uid=uid(801, 1, 1)
    )
    second = instance(
        "CT_small.dcm", patient=patient, study_uid=uid(802), series_uid=uid(802, 1), sop_uid=uid(802, 1, 1)
    )
    assert client.post("/dicomweb/studies", content=first, headers={"Content-Type": "application/dicom"}).is_success
    restarted = create_app(settings)  # a new process would derive the same pseudonym from the same key
    write_tree(tmp_path / "cli", iter([("second.dcm", second)]))
    assert ingest_files(restarted.state.services.dicom_ingest, [tmp_path / "cli"]).instances == 1
    restarted.state.services.close()
    studies = client.get("/fhir/ImagingStudy", params={"_count": 10}).json()["entry"]
    subjects = {entry["resource"]["subject"]["reference"] for entry in studies}
    assert len(studies) == 2 and len(subjects) == 1
    patients = client.get("/fhir/Patient").json()["entry"]
    assert len(patients) == 1
    assert patients[0]["resource"]["identifier"][0]["system"] == "urn:fhir-bridge:patient-id:HOSPITAL_A"


def test_the_app_refuses_to_start_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIR_BRIDGE_PSEUDONYM_KEY", raising=False)
    database = tmp_path / "refused.db"
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_PSEUDONYM_KEY"):
        create_app(Settings(database_url=f"sqlite:///{database}"))
    assert not database.exists()  # refused before touching anything
    with pytest.raises(ConfigurationError, match="shorter than 16"):
        create_app(Settings(database_url=f"sqlite:///{database}", pseudonym_key="short"))
    with pytest.raises(ConfigurationError, match="cannot read"):
        create_app(Settings(database_url=f"sqlite:///{database}", pseudonym_key_file=tmp_path / "missing.key"))


def test_serve_without_a_key_exits_with_a_clear_message(tmp_path):
    environment = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FHIR_BRIDGE_")}
    executable = str(Path(sys.executable).parent / "fhir-bridge")
    finished = subprocess.run(
        [executable, "serve", "--port", "1"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    assert "no site secret is configured" in finished.stderr and "fhir-bridge keygen" in finished.stderr
    assert not (tmp_path / "fhir-bridge.db").exists()


def test_a_key_file_made_by_keygen_starts_the_app(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIR_BRIDGE_PSEUDONYM_KEY", raising=False)
    executable = str(Path(sys.executable).parent / "fhir-bridge")
    key = tmp_path / "keys" / "pseudonym.key"
    subprocess.run([executable, "keygen", str(key)], check=True, capture_output=True, timeout=60)
    secret = key.read_text()
    assert len(secret.strip()) == 64 and (key.stat().st_mode & 0o777) == 0o600
    again = subprocess.run([executable, "keygen", str(key)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "kept" in again.stderr and key.read_text() == secret
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", pseudonym_key_file=key))
    app.state.services.close()


def test_remapped_uids_are_stable_and_the_sender_gets_its_own_back(client):
    data = instance(
        "MR_small.dcm", patient=_patient(1, "A^B"), study_uid=uid(803), series_uid=uid(803, 1), sop_uid=uid(803, 1, 1)
    )
    for _ in range(2):
        response = client.post("/dicomweb/studies", content=data, headers={"Content-Type": "application/dicom"})
        assert response.json()["00081199"]["Value"][0]["00081155"]["Value"] == [uid(803, 1, 1)]
    bundle = client.get("/fhir/ImagingStudy").json()
    assert len(bundle["entry"]) == 1
    remapped = bundle["entry"][0]["resource"]["series"][0]["instance"][0]["uid"]
    assert remapped.startswith("2.25.") and remapped != uid(803, 1, 1)
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == uid(803, 1, 1)
