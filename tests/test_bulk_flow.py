"""The whole Bulk Data flow over real HTTP, on SQLite and PostgreSQL: kick-off, poll, download.

Two clients: the IG's steps driven with ``httpx`` (checking every header and field on the way),
and SMART on FHIR's ``smart-fetch`` bulk client, run as a separate process, as a harvester would.
Both check that the NDJSON lines are exactly the stored resources: each line is byte for byte
what a read of that resource returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI

from tests.bulk_client import create, live, observation, populate, read_raw, run_export, wait


@pytest.fixture
def http(live_server: str, app: FastAPI):
    with live(live_server) as client:
        yield client
    app.state.services.bulk_exports.worker.stop()


def _newest_write(client) -> str:
    """The lastUpdated of the newest committed write (a deletion's too), from the system history."""
    return client.get("/fhir/_history", params={"_count": 1}).json()["entry"][0]["response"]["lastModified"]


def _by_reference(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        resource = orjson.loads(line)
        reference = f"{resource['resourceType']}/{resource['id']}"
        assert reference not in found, f"{reference} exported twice"
        found[reference] = line
    return found


def test_system_export_holds_exactly_the_stored_resources(http, live_server: str) -> None:
    population = populate(http)
    updated = orjson.loads(read_raw(http, "Patient", population.patients[2]))
    updated["gender"] = "male"
    assert http.put(f"/fhir/Patient/{updated['id']}", json=updated).status_code == 200
    gone = create(http, observation(None, "laboratory", "to be deleted"))["id"]
    assert http.delete(f"/fhir/Observation/{gone}").status_code == 200
    newest = _newest_write(http)

    kick = f"{live_server}/$export"
    export = run_export(http, kick)

    manifest = export.manifest
    assert manifest["transactionTime"] == newest  # the commit the export is pinned to
    assert manifest["request"] == kick
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    assert "deleted" not in manifest  # only _since exports list deletions
    assert sorted(item["type"] for item in manifest["output"]) == [
        "Group",
        "ImagingStudy",
        "Observation",
        "Organization",
        "Patient",
    ]
    for item in manifest["output"]:
        assert item["url"].startswith(f"{live_server}/$export-file/")
        assert {orjson.loads(line)["resourceType"] for line in export.files[item["url"]]} == {item["type"]}
    exported = _by_reference(export.lines())
    stored = {
        **{f"Patient/{p}": read_raw(http, "Patient", p) for p in population.patients},
        **{f"ImagingStudy/{s}": read_raw(http, "ImagingStudy", s) for ids in population.studies.values() for s in ids},
        **{
            f"Observation/{o}": read_raw(http, "Observation", o)
            for ids in population.observations.values()
            for o in ids
        },
        f"Organization/{population.organization}": read_raw(http, "Organization", population.organization),
        f"Group/{population.group}": read_raw(http, "Group", population.group),
    }
    assert exported == stored  # byte for byte; the update's new version; nothing deleted
    assert orjson.loads(exported[f"Patient/{updated['id']}"])["meta"]["versionId"] == "2"

    # the IG's clean-up: DELETE the status URL; then status and files are gone
    assert http.delete(export.status_url).status_code == 202
    assert http.get(export.status_url).status_code == 404
    assert http.get(manifest["output"][0]["url"]).status_code == 404
    assert http.delete(export.status_url).status_code == 404


def test_polling_reports_progress_until_the_manifest(http, live_server: str) -> None:
    populate(http)
    response = http.get(f"{live_server}/Patient/$export", headers={"Prefer": "respond-async"})
    assert response.status_code == 202
    assert response.json()["resourceType"] == "OperationOutcome"
    finished, progress = wait(http, response.headers["Content-Location"])
    assert finished.status_code == 200
    assert finished.headers["Expires"].endswith("GMT")
    assert all(p == "queued" or p.startswith("in progress: ") for p in progress)


SMART_FETCH = [sys.executable, "-c", "from smart_fetch.cli.main import main_cli; main_cli()", "bulk"]


def _smart_fetch(live_server: str, folder: Path, *arguments: str) -> dict[str, list[str]]:
    """Run SMART on FHIR's bulk client; the NDJSON files it wrote, by relative path."""
    command = [*SMART_FETCH, "--fhir-url", live_server, "--no-compression", *arguments, str(folder)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    return {
        str(path.relative_to(folder)): path.read_text(encoding="utf-8").splitlines()
        for path in sorted(folder.rglob("*.ndjson"))
        if path.name != "log.ndjson"
    }


def _log_events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.ndjson").read_text(encoding="utf-8").splitlines()]


def test_smart_fetch_exports_the_store(http, live_server: str, tmp_path: Path) -> None:
    population = populate(http)
    p1, p2, _ = population.patients
    uncategorised = create(http, observation(p1, None, "no category"))["id"]  # outside smart-fetch's default filter
    vital = create(http, observation(p2, "vital-signs", "weight"))["id"]

    files = _smart_fetch(live_server, tmp_path / "all", "--type", "Patient,Observation")

    assert sorted(files) == ["Observation.001.ndjson", "Patient.001.ndjson"]
    assert sorted(files["Patient.001.ndjson"]) == sorted(read_raw(http, "Patient", p) for p in population.patients)
    # smart-fetch asks for Observations with its default category _typeFilter: the one without is left out
    expected = [o for ids in population.observations.values() for o in ids] + [vital]
    assert sorted(files["Observation.001.ndjson"]) == sorted(read_raw(http, "Observation", o) for o in expected)
    assert uncategorised not in "".join(files["Observation.001.ndjson"])
    events = _log_events(tmp_path / "all")
    kickoff = next(e for e in events if e["eventId"] == "kickoff")["eventDetail"]
    assert "_typeFilter" in kickoff["requestParameters"]
    assert kickoff["softwareName"] == "fhir-bridge"
    # smart-fetch DELETEs the export when it has its files
    assert http.get(events[0]["exportId"]).status_code == 404


def test_smart_fetch_since_and_group_exports(http, live_server: str, tmp_path: Path) -> None:
    population = populate(http)
    p1, p2, p3 = population.patients
    before = _newest_write(http)
    later = create(http, observation(p3, "laboratory", "later"))["id"]
    dropped = population.observations[p1][0]
    assert http.delete(f"/fhir/Observation/{dropped}").status_code == 200

    since = _smart_fetch(
        live_server, tmp_path / "since", "--type", "Observation", "--since", before, "--since-mode", "updated"
    )
    # a harvester's incremental pull: what changed after ``before`` (exclusive, the IG), and what was deleted
    changed = {orjson.loads(line)["id"] for line in since["Observation.001.ndjson"]}
    assert later in changed and dropped not in changed
    assert population.observations[p2][0] not in changed
    deleted = [orjson.loads(line) for name, lines in since.items() if name.startswith("deleted") for line in lines]
    assert [entry["request"] for bundle in deleted for entry in bundle["entry"]] == [
        {"method": "DELETE", "url": f"Observation/{dropped}"}
    ]

    group = _smart_fetch(live_server, tmp_path / "group", "--group", population.group, "--type", "Patient")
    assert sorted(group["Patient.001.ndjson"]) == sorted(read_raw(http, "Patient", p) for p in (p1, p2))
