"""The DICOM ingest benchmark still runs end to end (tiny sizes, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a benchmark run end to end


def test_dicom_ingest_benchmark_runs_and_prints_its_table() -> None:
    command = [sys.executable, "-m", "benchmarks.dicom_ingest", "--studies", "2", "--series", "1", "--instances", "2"]
    command += ["--databases", "sqlite", "--workers", "1", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for text in ("(a) header parse", "(b) CLI ingest -> sqlite", "(d) STOW-RS over HTTP -> sqlite", "target:"):
        assert text in finished.stdout
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    assert results["instances"] == 4
    assert [row["key"] for row in results["rows"]] == [
        "header_parse",
        "bridge_reader",
        "cli_sqlite",
        "stow_sqlite",
        "stow_one_request_sqlite",
    ]
    assert all(row["rate"] > 0 for row in results["rows"])
