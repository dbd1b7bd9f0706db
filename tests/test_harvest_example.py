"""examples/harvest.py against a live server: every version exactly once over runs, with writes between
runs, an interrupted run, and deletions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

SCRIPT = Path(__file__).parent.parent / "examples" / "harvest.py"


def _harvest(base: str, workdir: Path, *extra: str) -> str:
    files = ["--state", str(workdir / "state.json"), "--out", str(workdir / "out.ndjson")]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), base, *files, "--count", "3", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _every_version(http: httpx.Client, base: str) -> list[tuple[str, str]]:
    """(fullUrl, ETag) of every version the server holds, from its own history."""
    found, url = [], f"{base}/_history?_count=1000"
    while url:
        bundle = http.get(url).json()
        found += [(e["fullUrl"], e["response"]["etag"]) for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return found


def _patient(http: httpx.Client, base: str, family: str) -> str:
    response = http.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert response.status_code == 201
    return response.json()["id"]


def test_harvester_sees_every_version_exactly_once(live_server: str, tmp_path: Path) -> None:
    base = live_server
    with httpx.Client(headers={"Content-Type": "application/fhir+json"}) as http:
        ids = [_patient(http, base, f"first-{i}") for i in range(5)]
        assert _harvest(base, tmp_path) == "5 versions harvested"

        # writes between runs: an update, a delete, creates, and a transaction (two versions, one commit)
        http.put(f"{base}/Patient/{ids[0]}", json={"resourceType": "Patient", "id": ids[0], "active": True})
        assert http.delete(f"{base}/Patient/{ids[1]}").status_code in (200, 204)
        ids += [_patient(http, base, f"second-{i}") for i in range(4)]
        together = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "active": False},
                    "request": {"method": "POST", "url": "Patient"},
                }
                for _ in range(2)
            ],
        }
        assert http.post(base, json=together).status_code == 200

        # an interrupted run: one page of three, its next link kept in the state file
        assert _harvest(base, tmp_path, "--max-pages", "1") == "3 versions harvested"
        assert "next" in json.loads((tmp_path / "state.json").read_text())

        # writes while the run is interrupted go to the run after
        http.put(f"{base}/Patient/{ids[2]}", json={"resourceType": "Patient", "id": ids[2], "gender": "other"})
        assert http.delete(f"{base}/Patient/{ids[0]}").status_code in (200, 204)

        assert _harvest(base, tmp_path) == "5 versions harvested"  # the rest of the 8
        assert _harvest(base, tmp_path) == "2 versions harvested"
        assert _harvest(base, tmp_path) == "0 versions harvested"
        expected = _every_version(http, base)

    lines = [json.loads(line) for line in (tmp_path / "out.ndjson").read_text().splitlines()]
    seen = [(line["fullUrl"], line["etag"]) for line in lines]
    assert len(seen) == len(set(seen)) == 15, "a version was harvested twice"
    assert sorted(seen) == sorted(expected)
    deletes = {line["fullUrl"].rsplit("/", 1)[1] for line in lines if line["method"] == "DELETE"}
    assert deletes == {ids[0], ids[1]}
    for line in lines:
        if line["method"] != "DELETE":
            assert f'W/"{line["resource"]["meta"]["versionId"]}"' == line["etag"]
