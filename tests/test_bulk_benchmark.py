"""The bulk export benchmark still runs end to end (a tiny store, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a benchmark run end to end


def test_bulk_export_benchmark_runs_and_checks_its_export() -> None:
    command = [sys.executable, "-m", "benchmarks.bulk_export", "--resources", "300", "--databases", "sqlite"]
    finished = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for row in ("baseline  SELECT content", "export    $export job", "peak RSS", "flat", "check"):
        assert row in finished.stdout
    (result,) = json.loads(finished.stdout.strip().splitlines()[-1])["results"]
    assert result["resources"] == 300
    assert result["export"]["lines"] == result["baseline"]["lines"] == 300
    assert result["export"]["checksum"] == result["baseline"]["checksum"]
