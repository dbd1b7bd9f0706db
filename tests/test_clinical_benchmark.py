"""The clinical ingest benchmark still runs end to end (tiny sizes, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a benchmark run end to end


def test_clinical_ingest_benchmark_runs_and_reports_rates_and_memory() -> None:
    command = [sys.executable, "-m", "benchmarks.clinical_ingest", "--rows", "60", "--checkpoint", "20"]
    command += ["--map-rows", "10", "--databases", "sqlite", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "baseline: plain CSV parsing" in finished.stdout
    assert "RSS at row 20:" in finished.stdout
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    sqlite = results["databases"]["sqlite"]
    assert sqlite["records"] == 60 and sqlite["failed"] == 0
    assert sqlite["written"] == 60 * 3 + 30  # Condition, grade and size per row; a Patient per two rows
    assert sqlite["records_per_s"] > 0 and sqlite["checkpoint_rss_mib"] > 0
