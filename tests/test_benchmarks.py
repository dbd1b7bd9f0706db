"""The benchmark command still runs end to end (tiny sizes, SQLite only), so that it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a benchmark run end to end


def test_store_api_benchmark_runs_and_prints_its_tables() -> None:
    command = [sys.executable, "-m", "benchmarks.store_api", "--patients", "40", "--databases", "sqlite"]
    command += ["--reads", "100", "--searches", "10", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    output = finished.stdout
    for heading in ("== sqlite:", "INGEST", "LATENCY (one keep-alive client, sequential)", "TARGETS (from the issue)"):
        assert heading in output
    for row in ("single creates:", "transactions:", "HTTP floor:", "read: GET Patient/{id}", "Patient?_total=accurate"):
        assert row in output
    results = json.loads(output.strip().splitlines()[-1])
    sqlite = results["databases"]["sqlite"]
    assert [i["key"] for i in sqlite["ingest"]] == ["single_create", "transaction"]
    assert sqlite["ingest"][1]["resources"] == 60  # 30 Patients + 30 ImagingStudies in one transaction
    assert {x["key"] for x in sqlite["latency"]} >= {"http_floor", "read", "search_identifier", "search_total"}
    assert all(x["p50_ms"] > 0 for x in sqlite["latency"])


def test_access_benchmark_runs_and_prints_its_ratios() -> None:
    command = [sys.executable, "-m", "benchmarks.access", "--databases", "sqlite", "--requests", "40"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for row in ("read baseline", "read audit", "read auth+audit", "search auth+audit", "token verification"):
        assert row in finished.stdout


def test_validation_benchmark_runs_and_prints_its_ratios() -> None:
    command = [sys.executable, "-m", "benchmarks.validation", "--seconds", "0.03", "--transactions", "1", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    rows = results["validation"]
    assert 0 < results["transaction"]["validate_us"] < results["transaction"]["transaction_us"]
    assert [row["set"] for row in rows][:2] == ["Patient (bridge-shaped)", "ImagingStudy (bridge-shaped)"]
    assert rows[-1]["resources"] == 726  # the shipped spec examples but the 7 errata
    assert all(row["validate_us"] > 0 and row["parse_us"] > 0 for row in rows)


def test_audit_benchmarks_run_and_count_every_record() -> None:
    command = [sys.executable, "-m", "benchmarks.audit_commit", "--databases", "sqlite", "--tasks", "1,4"]
    finished = subprocess.run([*command, "--records", "5"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert len([line for line in finished.stdout.splitlines() if " sqlite " in line]) == 2
    command = [sys.executable, "-m", "benchmarks.audit_wrk", "--databases", "sqlite", "--seconds", "1", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = json.loads(finished.stdout.strip().splitlines()[-1])
    assert [run["connections"] for run in runs] == [1, 16]
    assert all(run["failed"] == 0 and run["audit_records"] > 0 for run in runs)


def test_throughput_benchmark_runs_wrk_and_prints_the_issue_table(tmp_path: Path) -> None:
    """wrk against the floor, the in-memory baseline and fhir-bridge (1 and 2 workers), tiny and short."""
    command = [sys.executable, "-m", "benchmarks.throughput", "--patients", "20", "--seconds", "1", "--repeat", "1"]
    command += ["--connections", "1,4", "--baseline", "inmemory", "--workers", "1,2", "--no-unaudited", "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:] + finished.stdout[-3000:]
    results = json.loads(finished.stdout.strip().splitlines()[-1])
    measured = {(f["server"], f["kind"], f["connections"]) for f in results["figures"]}
    for kind in ("read", "identifier", "study"):
        assert {("fhir-bridge", kind, 1), ("fhir-bridge", kind, 4), ("fhir-bridge, 2 workers", kind, 4)} <= measured
    assert ("floor", "read", 4) in measured and ("inmemory", "identifier", 4) in measured
    assert all(f["rate"] > 0 and f["cpu_us"] > 0 for f in results["figures"])
    assert "TARGETS (from the issue, same run)" in finished.stdout
    assert "| fhir-bridge, Patient read |" in finished.stdout
    assert len(results["workers_table"]) == 2 + 3  # header, rule and a row per request kind


def test_report_renders_the_performance_page_and_its_plots_from_saved_figures(tmp_path: Path) -> None:
    saved = REPO / "docs" / "performance.json"
    output = tmp_path / "performance.md"
    command = [sys.executable, "-m", "benchmarks.report", "--from-json", str(saved), "--output", str(output)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    text = output.read_text()
    for heading in ("### Throughput under concurrency (issue 16)", "### Several workers", "### Latency vs store size"):
        assert heading in text
    for plot in ("throughput-connections.png", "throughput-workers.png", "latency-size.png"):
        assert (tmp_path / "performance" / plot).read_bytes()[:4] == b"\x89PNG"


def test_archive_benchmark_runs_on_postgresql_and_prints_every_row(postgres_server: str) -> None:
    """The archive-size benchmark (issue 16, part 3) at a tiny scale: it loads, measures every row and
    checks its own answers (counts, history and export totals); the figures themselves mean nothing here."""
    command = [sys.executable, "-m", "benchmarks.archive", "--scale", "0.0003", "--samples", "6"]
    command += ["--catalogue-samples", "1", "--postgres-url", postgres_server, "--json"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:] + finished.stdout[-3000:]
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result["mix"] == {"patients": 90, "studies": 300, "observations": 600}
    labels = [row["label"] for row in result["results"]]
    for label in (
        "load through Store.write",
        "size on disk",
        "read by id (Patient, ImagingStudy, Observation)",
        "Patient?identifier=",
        "ImagingStudy?patient=",
        "ImagingStudy?modality=&started= (one month)",
        "Observation?subject=&code=",
        "ImagingStudy?_summary=count",
        "Observation?_summary=count",
        "_history?_since= paged with _count=1000",
        "GET /catalogue (statistics computed afresh)",
        "GET /catalogue/counts?stratify=modality",
        "$export (system, all resources)",
        "$export: server RSS peak, first half / second half",
    ):
        assert label in labels
    for row in result["results"]:
        (printed,) = [line for line in finished.stdout.splitlines() if line.startswith(f"  {row['label']} ")]
        if row["pass"] is not None:
            assert printed.endswith("PASS" if row["pass"] else "MISS"), printed
    assert result["load"]["updated"] == 10  # 1 % of 990 resources
    assert result["export"]["resources"] == 990  # the Patients the catalogue samples wrote are deleted again
    assert result["sizes"]["resource"] > 0 and result["sizes"]["idx_token"] > 0
