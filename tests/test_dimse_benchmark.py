"""The C-STORE benchmark still runs end to end (tiny sizes, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.dimse_peers import need

REPO = Path(__file__).resolve().parents[1]


def test_dicom_dimse_benchmark_runs_and_prints_its_table() -> None:
    need("storescu")
    command = [sys.executable, "-m", "benchmarks.dicom_dimse", "--studies", "2", "--series", "1", "--instances", "3"]
    command += ["--databases", "sqlite", "--associations", "2", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for text in ("(a) header parse", "pynetdicom answering only, 2 assoc.", "C-STORE, 2 associations -> sqlite"):
        assert text in finished.stdout
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    assert results["instances"] == 6
    keys = [row["key"] for row in results["rows"]]
    assert keys == ["header_parse", "bridge_reader", "protocol_floor_2", "c_store_sqlite_2"]
    assert all(row["rate"] > 0 for row in results["rows"])
