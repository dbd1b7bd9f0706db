"""`fhir-bridge ingest`: a folder tree in, a summary out, and an exit code that says whether all went in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.ingest.files import ingest_files
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.dicom_samples import multipart, study_set, write_tree


def _ingest(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fhir-bridge"), "ingest", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """3 studies x 2 series x 4 instances, nested like an export, plus the usual debris."""
    root = tmp_path / "export"
    write_tree(root, study_set(studies=3, series=2, instances=4))
    (root / "DICOMDIR").write_bytes(b"not an instance")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


def _studies(database_url: str) -> list[dict]:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app) as client:
        bundle = client.get("/fhir/ImagingStudy", params={"_count": 100}).json()
    app.state.services.close()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_a_folder_tree_is_ingested_with_a_summary_and_failures_listed(database_url, tree, tmp_path):
    (tree / "notes.txt").write_text("not DICOM")
    good = next(tree.rglob("0001.dcm"))
    (tree / "cut.dcm").write_bytes(good.read_bytes()[:600])
    arguments = ["--database-url", database_url, "--workers", "2", "--batch-size", "7"]
    finished = _ingest(str(tree), str(tmp_path / "missing"), *arguments, cwd=tmp_path)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "ingested 24 instances of 3 studies and 6 series" in finished.stdout
    assert "failed: 2 files" in finished.stdout
    assert "notes.txt" not in finished.stdout.split("skipped:")[0]  # not an instance: skipped, not failed
    assert f"{tree / 'cut.dcm'}: " in finished.stdout  # cut at an element edge: its UIDs are missing
    assert f"{tmp_path / 'missing'}: no such file or folder" in finished.stdout
    assert (
        "skipped: 3 files that are not instances (a DICOMDIR (media directory): 1, a hidden file: 1, "
        "not a DICOM file: 1)" in finished.stdout
    )
    studies = _studies(database_url)
    assert sorted(s["numberOfInstances"] for s in studies) == [8, 8, 8]
    assert all(s["numberOfSeries"] == 2 for s in studies)
    folders = sorted(str(folder) for folder in tree.glob("study*"))
    again = _ingest(*folders, "--database-url", database_url, "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert "failed" not in again.stdout
    assert _studies(database_url) == studies  # the same data again: no new version


def test_python_m_and_a_key_file_work_too(tmp_path):
    root = tmp_path / "one"
    write_tree(root, study_set(studies=1, series=1, instances=2))
    key = tmp_path / "site.key"
    key.write_text("a-site-secret-for-the-command-line-0123")
    command = [sys.executable, "-m", "fhir_bridge", "ingest", str(root), "--pseudonym-key-file", str(key)]
    finished = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "fhir-bridge.db").exists()


def test_files_and_stow_land_on_the_same_resources(app, tmp_path, live_server):
    """The same study pushed by STOW-RS and ingested from files is one ImagingStudy, one Patient."""
    files = list(study_set(studies=1, series=1, instances=4))
    write_tree(tmp_path / "half", iter(files[:3]))
    body = multipart([data for _, data in files[1:]], "cli-and-stow")
    root = live_server.removesuffix("/fhir")
    response = httpx.post(
        f"{root}/dicomweb/studies",
        content=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=cli-and-stow'},
    )
    assert response.status_code == 200
    summary = ingest_files(app.state.services.dicom_ingest, [tmp_path / "half"], workers=2, batch_size=2)
    assert summary.instances == 3 and not summary.failed
    studies = httpx.get(f"{live_server}/ImagingStudy").json()["entry"]
    assert len(studies) == 1 and studies[0]["resource"]["numberOfInstances"] == 4
    assert len(httpx.get(f"{live_server}/Patient").json()["entry"]) == 1


def test_the_readme_quick_start_starts_a_server_that_takes_dicom(tmp_path):
    """The README's quick-start command, after its install step, on a fresh folder (no key, no database)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    command = next(line.strip() for line in readme.splitlines() if line.startswith("    ") and "keygen" in line)
    assert command.endswith("fhir-bridge serve")
    after_install = command.split("pip install -e . && ", 1)[1].replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")}
    environment["FHIR_BRIDGE_PORT"] = str(port)
    process = subprocess.Popen(
        ["bash", "-c", after_install], cwd=tmp_path, env=environment, start_new_session=True, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the quick-start server did not answer"
                time.sleep(0.2)
        data = next(study_set(studies=1, series=1, instances=1))[1]
        response = httpx.post(
            f"http://127.0.0.1:{port}/dicomweb/studies", content=data, headers={"Content-Type": "application/dicom"}
        )
        assert response.status_code == 200
        assert (tmp_path / "pseudonym.key").exists() and (tmp_path / "fhir-bridge.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
