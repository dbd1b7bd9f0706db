"""The MLLP benchmark still runs end to end (tiny sizes, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a benchmark run end to end


def test_hl7_mllp_benchmark_runs_and_prints_its_table() -> None:
    command = [sys.executable, "-m", "benchmarks.hl7_mllp", "--messages", "12", "--connections", "1,2"]
    command += ["--databases", "sqlite", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "MLLP sqlite: 2 connection(s)" in finished.stdout
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    assert results["messages"] == 12
    assert [row["key"] for row in results["rows"]] == ["a", "b", "mllp_1", "mllp_2"]
    assert all(row["rate"] > 0 for row in results["rows"])
