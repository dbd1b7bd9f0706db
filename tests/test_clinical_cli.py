"""`fhir-bridge ingest-clinical` and plugin mappers: progress bar, summary, exit code, a hospital's own format."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, cli, create_app
from fhir_bridge.mapping.clinical import ENTRY_POINT_GROUP
from tests.conftest import TEST_PSEUDONYM_KEY

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
PLUGIN = Path(__file__).parent / "plugins" / "fhir_bridge_example_plugin"
PATHOLOGY = """Patient: PID-00001
Specimen: S-24-001
Date: 12.03.2024
Grade: 2

Patient: PID-00002
Specimen: S-24-002
Date: 15.03.2024
Grade: 5
"""


def _command(*arguments: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fhir-bridge"), *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env)


def test_ingest_clinical_reports_progress_summary_and_failures(database_url, tmp_path, capsys):
    export = tmp_path / "diagnoses.csv"
    lines = (EXAMPLES / "cancer-diagnosis.csv").read_text().splitlines(keepends=True)
    export.write_text("".join(lines) + lines[1].replace("PID-00001", "PID-00003").replace(",G2,", ",G9,"))
    report = tmp_path / "report.ndjson"
    arguments = ["--mapping", "cancer-diagnosis", "--database-url", database_url]
    assert cli.main(["ingest-clinical", str(export), *arguments, "--report", str(report)]) == 1
    finished = capsys.readouterr()
    assert "ingested 3 records of 1 files through cancer-diagnosis" in finished.out
    assert "2 created, 0 updated, 0 unchanged, 1 failed" in finished.out
    assert f"{export} row 3 (line 4), column grade: unknown code 'G9'" in finished.out
    assert "100%" in finished.err  # the progress bar
    assert len(report.read_text().splitlines()) == 3
    again = ["ingest-clinical", str(EXAMPLES / "cancer-diagnosis.csv"), *arguments, "--no-progress"]
    assert cli.main(again) == 0
    finished = capsys.readouterr()
    assert "0 created, 0 updated, 2 unchanged, 0 failed" in finished.out
    assert "100%" not in finished.err


def test_a_malformed_mapping_file_stops_the_command_before_reading(tmp_path, capsys):
    mapping = tmp_path / "mine.yaml"
    mapping.write_text("name: mine\nresources: []\n")
    database = f"sqlite:///{tmp_path}/x.db"
    command = ["ingest-clinical", "--mapping", str(mapping), str(EXAMPLES / "cancer-diagnosis.csv")]
    assert cli.main([*command, "--database-url", database]) == 2
    assert "line 2, /resources: [] should be non-empty" in capsys.readouterr().out


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plugin made importable with its entry points, as `pip install` would (a dist-info on sys.path)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"][ENTRY_POINT_GROUP]
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
    )
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_plugin_adds_an_input_format_and_its_mapping(plugin, database_url):
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    assert "keyvalue" in app.state.services.mappings.readers
    with TestClient(app) as client:
        response = client.post(
            "/ingest/clinical",
            params={"mapping": "pathology-keyvalue"},
            content=PATHOLOGY,
            headers={"Content-Type": "text/x-keyvalue"},
        )
        assert response.status_code == 200, response.text
        records = response.json()["records"]
        assert [r["status"] for r in records] == ["created", "failed"]
        assert records[1]["line"] == 6 and records[1]["errors"][0]["column"] == "Grade"
        grade = client.get("/fhir/Observation", params={"code": "http://loinc.org|33732-9"}).json()["entry"][0]
        assert grade["resource"]["valueCodeableConcept"]["coding"][0]["code"] == "G2"
        assert grade["resource"]["effectiveDateTime"] == "2024-03-12"
    app.state.services.close()


def test_the_command_line_finds_plugins_too(plugin, tmp_path):
    export = tmp_path / "pathology.kv"
    export.write_text(PATHOLOGY)
    paths = os.pathsep.join([str(plugin), str(PLUGIN / "src")])
    environment = {**os.environ, "PYTHONPATH": paths}
    listed = _command("mappings", "list", cwd=tmp_path, env=environment)
    assert "pathology-keyvalue" in listed.stdout and "keyvalue" in listed.stdout.splitlines()[-1]
    finished = _command(
        "ingest-clinical", "--mapping", "pathology-keyvalue", str(export), "--database-url", f"sqlite:///{tmp_path}/x.db",
        "--no-progress", cwd=tmp_path, env=environment,
    )  # fmt: skip
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "1 created, 0 updated, 0 unchanged, 1 failed" in finished.stdout
    assert f"{export} row 2 (line 6), column Grade: unknown code '5'" in finished.stdout
