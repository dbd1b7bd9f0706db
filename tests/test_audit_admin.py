"""What the audit trail records beyond single requests: Bundle entries one by one, administrative commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Row, select

from fhir_bridge import Settings, cli
from fhir_bridge.audit.events import audit_event
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.services import Services
from tests.dicom_samples import study_set, write_tree

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"


def _rows(services: Services) -> list[Row]:
    with services.audit_log.engines.reader.connect() as connection:
        return list(connection.execute(select(AUDIT).order_by(AUDIT.c.id)).all())


def _trail(client: TestClient) -> list[Row]:
    return _rows(client.app.state.services)  # type: ignore[attr-defined]


def _entry(method: str, url: str, resource: dict[str, Any] | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def test_transaction_entries_are_recorded_one_by_one_with_action_type_id_and_outcome(client: TestClient) -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:example:mrn", "value": "MRN-1"}]}
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "grade"},
        "subject": {"reference": "urn:uuid:7b0e2c1a-0000-4000-8000-000000000001"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {**_entry("POST", "Patient", patient), "fullUrl": "urn:uuid:7b0e2c1a-0000-4000-8000-000000000001"},
            _entry("POST", "Observation", observation, ifNoneExist="identifier=urn:example:obs|OBS-1"),
            _entry("GET", "Patient?family=Doe"),
        ],
    }
    answer = client.post("/fhir", json=bundle)
    assert answer.status_code == 200, answer.text
    created = [e["response"]["location"].split("/_history")[0] for e in answer.json()["entry"][:2]]
    rows = _trail(client)
    assert [(r.method, r.path, r.interaction, r.action, r.status) for r in rows] == [
        ("POST", "/fhir", "transaction", "E", 200),
        ("POST", "/fhir/Patient", "create", "C", 201),
        ("POST", "/fhir/Observation", "create", "C", 201),
        ("GET", "/fhir/Patient", "search-type", "E", 200),
    ]
    assert [r.entity for r in rows[1:3]] == created
    assert [r.entity_type for r in rows[1:]] == ["Patient", "Observation", "Patient"]
    assert rows[1].detail == "Bundle.entry[0] of a transaction"
    assert rows[2].query.startswith("identifier=hmac%3A") and rows[3].query.startswith("family=hmac%3A")
    text = repr([tuple(row) for row in rows])
    assert "OBS-1" not in text and "Doe" not in text  # personal criteria only as keyed hashes
    event = audit_event(rows[1])
    assert event["entity"][0]["what"]["reference"] == created[0] and event["outcome"] == "0"


def test_a_refused_transaction_records_each_entry_as_not_applied(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry("POST", "Patient", {"resourceType": "Patient"}),
            _entry("PUT", "Patient/abc", {"resourceType": "Patient", "id": "abc", "gender": "neither"}),
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 400
    rows = _trail(client)
    assert [(r.path, r.status) for r in rows] == [("/fhir", 400), ("/fhir/Patient", 400), ("/fhir/Patient/abc", 400)]
    assert "Bundle.entry[1]" in rows[0].detail
    assert rows[1].detail == "Bundle.entry[0] of a transaction: not applied, the transaction failed"
    assert rows[2].detail.startswith("Bundle.entry[1] of a transaction: not applied, the transaction failed here: ")
    assert "gender" in rows[2].detail
    assert (rows[2].interaction, rows[2].entity) == ("update", "Patient/abc")


def test_batch_entries_are_recorded_with_their_own_outcomes(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [_entry("POST", "Patient", {"resourceType": "Patient"}), _entry("GET", "Patient/nope")],
    }
    assert client.post("/fhir", json=bundle).status_code == 200
    rows = _trail(client)
    assert [(r.interaction, r.status, r.entity) for r in rows[1:]] == [
        ("create", 201, rows[1].entity),
        ("read", 404, "Patient/nope"),
    ]
    assert rows[0].interaction == "batch" and rows[1].entity.startswith("Patient/")
    assert "Patient/nope is not known" in rows[2].detail
    # what a client sends longer than the trail's columns is cut, on PostgreSQL too, not a failed request
    long = {**bundle, "entry": [_entry("GET", "Patient/" + "x" * 300)]}
    assert client.post("/fhir", json=long).status_code == 200
    assert _trail(client)[-1].entity == ("Patient/" + "x" * 300)[:256]


def test_clients_add_and_remove_are_recorded_with_the_operator(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    database = ["--database-url", database_url]
    add = ["clients", "add", "partner", "--scope", "system/Patient.rs", "--new-key", str(tmp_path / "partner.pem")]
    assert cli.main([*add, *database]) == 0
    assert cli.main(["clients", "add", "bad client", "--scope", "nonsense", "--jwks-url", "https://x", *database]) == 2
    assert cli.main(["clients", "remove", "partner", *database]) == 0
    assert cli.main(["clients", "remove", "ghost", *database]) == 2
    with Services.from_settings(settings) as services:
        rows = _rows(services)
        assert services.audit_log.verify().intact
    assert [(r.method, r.path, r.action, r.status) for r in rows] == [
        ("CLI", "clients add", "C", 200),
        ("CLI", "clients add", "C", 400),
        ("CLI", "clients remove", "D", 200),
        ("CLI", "clients remove", "D", 404),
    ]
    assert rows[0].detail == "registered client partner with scopes system/Patient.rs, keys: 1 key(s)"
    assert rows[3].detail == "found no client ghost"
    event = audit_event(rows[0])
    assert event["type"]["code"] == "110137"  # DICOM: User Security Attributes Changed
    assert event["agent"][0]["who"]["display"].startswith("operator ") and "@" in event["agent"][0]["name"]
    assert event["entity"][0]["description"] == "fhir-bridge clients add"
    assert audit_event(rows[3])["outcome"] == "4"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the ingests' own tests cover both stores
def test_command_line_ingests_are_recorded_with_counts_not_names(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    export = tmp_path / "DOE^JANE"  # folder names can name patients: the trail keeps counts only
    write_tree(export, study_set(studies=1, series=1, instances=2))
    arguments = ["--database-url", database_url, "--no-progress"]
    assert cli.main(["ingest", str(export), "--workers", "1", *arguments]) == 0
    clinical = ["ingest-clinical", str(EXAMPLES / "cancer-diagnosis.csv"), "--mapping", "cancer-diagnosis"]
    assert cli.main([*clinical, *arguments]) == 0
    with Services.from_settings(settings) as services:
        rows = _rows(services)
    assert [(r.path, r.action, r.status) for r in rows] == [("ingest", "C", 200), ("ingest-clinical", "C", 200)]
    assert rows[0].detail == "stored 2 instances of 1 studies; 0 files failed, 0 skipped"
    assert rows[1].detail.startswith("2 records of 1 files through the mapping cancer-diagnosis: 2 created")
    assert all(audit_event(row)["type"]["code"] == "110107" for row in rows)  # DICOM: Import
    text = repr([tuple(row) for row in rows])
    assert "DOE" not in text and "PID-" not in text and str(tmp_path) not in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the key file is the same on both stores
def test_signing_key_rotation_is_recorded_with_the_new_key_id(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    keys = ["--token-key-file", str(tmp_path / "token-keys.json"), "--database-url", database_url]
    assert cli.main(["keys", "rotate-signing", *keys]) == 0
    with Services.from_settings(
        settings.model_copy(update={"token_key_file": tmp_path / "token-keys.json"})
    ) as services:
        rows = _rows(services)
        newest = services.token_keys.keys[-1].kid
        assert services.audit_log.verify().intact
    assert [(r.method, r.path, r.action, r.status) for r in rows] == [("CLI", "keys rotate", "U", 200)]
    assert rows[0].detail == f"new signing key {newest}"
    assert audit_event(rows[0])["type"]["code"] == "110135"  # DICOM: Object Security Attributes Changed
