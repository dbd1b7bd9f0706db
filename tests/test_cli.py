"""The command line: `fhir-bridge serve` and `python -m fhir_bridge serve` start a working server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.server_process import first_answer


def _wait_for(url: str, process: subprocess.Popen) -> httpx.Response:
    return first_answer(url, process, lambda: process.stdout.read() if process.stdout else "")


@pytest.mark.parametrize("command", [["fhir-bridge"], [sys.executable, "-m", "fhir_bridge"]])
def test_serve_starts_the_api_on_the_given_database(command, database_url, tmp_path: Path):
    port = free_port()
    executable = [str(Path(sys.executable).parent / "fhir-bridge")] if command == ["fhir-bridge"] else command
    arguments = [*executable, "serve", "--host", "127.0.0.1", "--port", str(port), "--database-url", database_url]
    process = subprocess.Popen(arguments, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        metadata = _wait_for(f"http://127.0.0.1:{port}/fhir/metadata", process)
        assert metadata.status_code == 200
        assert metadata.json()["fhirVersion"] == "4.0.1"
        created = httpx.post(f"http://127.0.0.1:{port}/fhir/Patient", json={"resourceType": "Patient"})
        assert created.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_reads_settings_from_the_environment(tmp_path: Path):
    port = free_port()
    environment = dict(
        os.environ, FHIR_BRIDGE_PORT=str(port), FHIR_BRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'env.db'}"
    )
    executable = str(Path(sys.executable).parent / "fhir-bridge")
    process = subprocess.Popen([executable, "serve"], cwd=tmp_path, env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/fhir/metadata", process).status_code == 200
        assert (tmp_path / "env.db").exists()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_default_database_is_a_sqlite_file_in_the_working_directory(tmp_path: Path):
    port = free_port()
    executable = str(Path(sys.executable).parent / "fhir-bridge")
    process = subprocess.Popen(
        [executable, "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/fhir/metadata", process).status_code == 200
        assert (tmp_path / "fhir-bridge.db").exists()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_explain_prints_the_sql_and_the_plan_of_a_search(
    client, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from fhir_bridge.cli import main

    query = "ImagingStudy?modality=CT&started=ge2024-03-01&started=lt2024-04-01"
    assert main(["explain", query, "--database-url", database_url]) == 0
    printed = capsys.readouterr().out
    sql, _, plan = printed.partition("\nplan:\n")
    assert "idx_date" in sql and "'modality'" in sql
    assert "idx_date" in plan  # both databases name the index tables their plans read
    assert main(["explain", "ImagingStudy?bogus=1", "--database-url", database_url]) == 2
    assert "bogus" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_serve_refuses_a_number_of_workers_below_one(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_bridge.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--workers", workers])
    assert stopped.value.code == 2
    assert "is not a number of workers (1 or more)" in capsys.readouterr().err


def test_a_serving_process_keeps_its_start_up_heap_out_of_garbage_collection(tmp_path: Path) -> None:
    """``serve`` settles the heap once its app is built: full collections then skip the definitions and
    tables loaded at start, and requests waiting for their audit commit do not set off collections."""
    environment = dict(os.environ, FHIR_BRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'heap.db'}")
    probe = (
        "import gc\n"
        "from fhir_bridge.cli.serve import YOUNG_COLLECTION_THRESHOLD, worker_app\n"
        "before = gc.get_freeze_count()\n"
        "app = worker_app()\n"
        "young = gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD\n"
        "print(before, gc.get_freeze_count(), young, len(gc.get_objects()))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True
    ).stdout.split()
    before, frozen, threshold_set, tracked = int(printed[0]), int(printed[1]), printed[2], int(printed[3])
    assert before == 0 and threshold_set == "True"
    assert frozen > 10 * tracked  # nearly everything start-up built is frozen; little is left to collect
