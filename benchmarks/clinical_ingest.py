"""Clinical ingest benchmark: records/s of a cancer-diagnosis CSV into SQLite and PostgreSQL, and flat memory.

The CSV (default 100,000 rows; two diagnoses per patient; each row a Condition, a grade and a
tumour-size Observation, and every other row a new Patient: ~3.5 resources a row) goes through
``ClinicalIngest.ingest``, the function behind ``POST /ingest/clinical`` and ``fhir-bridge
ingest-clinical``, per-record mode, in a fresh process per database. Printed next to baselines
measured in the same run on the same file (machines are noisy):

- plain CSV parsing (``csv.DictReader`` over the file): the floor of any streamed reader;
- mapping and FHIR validation alone (no database), on the first rows: what the store adds is the rest;
- the same resources as conditional-update transaction Bundles (``PUT Type?identifier=...``, one Bundle
  per ingest batch, Patients by id), processed in-process by the Bundle processor into a fresh store:
  what a client of the REST API pays for the same writes. The records are mapped before its clock
  starts, so the comparison favours the Bundles; clinical ingest must still be at least as fast.

Memory: the ingesting process's resident set size after the checkpoint (default 10,000 rows) and at
the end; streamed ingest keeps them about equal (a whole-file load would grow with the file).

``python -m benchmarks.clinical_ingest --help``; ``--rows 2000`` for a quick run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEY = "benchmark-site-secret-0123456789abcdef"
HEADER = (  # every column the mapping reads (a header lacking one is refused); the rows leave the last ones empty
    "patient_id,diagnosis_id,diagnosis_date,icd10,icdo3_topography,icdo3_morphology,grade,tumour_size_mm,"
    "snomed_code,snomed_display,diagnosis_text,body_site_snomed,laterality,stage_type,t_stage,n_stage,m_stage,"
    "stage_group\n"
)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            site = i % 9
            out.write(
                f"BENCH-{i // 2:07d},D{i:07d},{1 + i % 28:02d}/{1 + i % 12:02d}/2023,C50.{site},C50.{site},8500/3,"
                f"G{1 + i % 3},{10 + i % 40}\n"
            )


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def csv_baseline(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as source:
        count = sum(1 for _ in csv.DictReader(source))
    return count / (time.perf_counter() - started)


def child(database_url: str, csv_path: Path, checkpoint: int, map_rows: int) -> dict[str, Any]:
    """Runs in its own process: the ingest, with memory read at the checkpoint and at the end."""
    from fhir_bridge import Settings, create_app
    from fhir_bridge.ingest.provenance import Source
    from fhir_bridge.mapping.clinical import ReaderOptions

    app = create_app(Settings(database_url=database_url, pseudonym_key=KEY, auth="none"))
    registry, ingest = app.state.services.mappings, app.state.services.clinical_ingest
    mapping, reader = registry.load("cancer-diagnosis"), registry.reader("csv")
    mapper = ingest.mapper(mapping)
    with csv_path.open("rb") as source:
        started, mapped = time.perf_counter(), 0
        for record in reader.read(source, ReaderOptions()):
            mapper.map(record.data)
            mapped += 1
            if mapped >= map_rows:
                break
        map_rate = mapped / (time.perf_counter() - started)
    memory: dict[str, float] = {"start_rss_mib": rss_mib()}
    resources = 0

    def on_result(result: Any) -> None:
        nonlocal resources
        resources += sum(1 for r in result.resources if r["status"] in ("created", "updated"))
        if result.row == checkpoint:
            memory["checkpoint_rss_mib"] = rss_mib()
            memory["checkpoint_peak_mib"] = peak_mib()

    with csv_path.open("rb") as source:
        started = time.perf_counter()
        summary = ingest.ingest(
            mapping, reader.read(source, ReaderOptions()), Source("benchmark", "benchmark"), on_result=on_result
        )
        elapsed = time.perf_counter() - started
    memory["end_rss_mib"], memory["end_peak_mib"] = rss_mib(), peak_mib()
    app.state.services.close()
    return {
        "records": summary.records,
        "failed": summary.failed,
        "written": resources,
        "seconds": elapsed,
        "records_per_s": summary.records / elapsed,
        "map_only_records_per_s": map_rate,
        **memory,
    }


def bundles_child(database_url: str, csv_path: Path, batch_size: int) -> dict[str, Any]:
    """Runs in its own process: the records' resources as conditional-update transaction Bundles."""
    from fhir_bridge import Settings
    from fhir_bridge.interactions.transaction import BundleProcessor
    from fhir_bridge.mapping.clinical import ReaderOptions
    from fhir_bridge.services import Services

    with Services.from_settings(Settings(database_url=database_url, pseudonym_key=KEY, auth="none")) as services:
        mapping, reader = services.mappings.load("cancer-diagnosis"), services.mappings.reader("csv")
        mapper = services.clinical_ingest.mapper(mapping)
        with csv_path.open("rb") as source:
            mapped = [mapper.map(record.data) for record in reader.read(source, ReaderOptions())]
        bundles = [_bundle(mapped[i : i + batch_size]) for i in range(0, len(mapped), batch_size)]
        processor = BundleProcessor(services.interactions)
        started = time.perf_counter()
        for bundle in bundles:
            processor.process(bundle, "http://benchmark/fhir", return_resources=False)
        elapsed = time.perf_counter() - started
    entries = sum(len(bundle["entry"]) for bundle in bundles)
    return {"records": len(mapped), "entries": entries, "seconds": elapsed, "records_per_s": len(mapped) / elapsed}


def _bundle(records: list[Any]) -> dict[str, Any]:
    """One transaction: each record's Patient by id (once), its other resources by identifier."""
    entries: list[dict[str, Any]] = []
    patients: set[str] = set()
    for record in records:
        if record.patient is not None and record.patient["id"] not in patients:
            patients.add(record.patient["id"])
            entries.append(
                {"resource": record.patient, "request": {"method": "PUT", "url": f"Patient/{record.patient['id']}"}}
            )
        for produced in record.produced:
            system, value = produced.identifier
            url = f"{produced.resource_type}?identifier={system}|{value}"
            entries.append({"resource": produced.resource, "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _postgres_schema(server: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in server else "?"

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    return f"{server}{separator}options=-csearch_path%3D{schema}", drop


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"rows": arguments.rows, "checkpoint": arguments.checkpoint, "databases": {}}
    with tempfile.TemporaryDirectory() as scratch:
        csv_path = Path(scratch) / "diagnoses.csv"
        write_csv(csv_path, arguments.rows)
        results["csv_mib"] = csv_path.stat().st_size / 2**20
        results["csv_parse_records_per_s"] = csv_baseline(csv_path)
        for database in arguments.databases:
            drop = None
            if database == "sqlite":
                url = f"sqlite:///{scratch}/bench.db"
            else:
                url, drop = _postgres_schema(arguments.postgres_url)
            try:
                command = ["--child", url, str(csv_path)]
                command += ["--checkpoint", str(arguments.checkpoint), "--map-rows", str(arguments.map_rows)]
                results["databases"][database] = _run_child(database, command)
            finally:
                if drop is not None:
                    drop()
            drop = None
            if database == "sqlite":
                url = f"sqlite:///{scratch}/bundles.db"
            else:
                url, drop = _postgres_schema(arguments.postgres_url)
            try:
                bundles = _run_child(database, ["--bundles-child", url, str(csv_path)])
                results["databases"][database]["bundles"] = bundles
            finally:
                if drop is not None:
                    drop()
    return results


def _run_child(database: str, arguments: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.clinical_ingest", *arguments]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"the {database} run failed:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(results: dict[str, Any]) -> None:
    print(f"== clinical ingest: {results['rows']} CSV rows ({results['csv_mib']:.1f} MiB), mapping cancer-diagnosis")
    floor = results["csv_parse_records_per_s"]
    print(f"baseline: plain CSV parsing           {floor:12,.0f} records/s")
    for database, figures in results["databases"].items():
        rate = figures["records_per_s"]
        print(f"-- {database}")
        print(f"   mapping + validation only          {figures['map_only_records_per_s']:12,.0f} records/s")
        print(
            f"   ingest (per-record mode)           {rate:12,.0f} records/s  "
            f"({figures['written']:,} resources written, {figures['failed']} failed, {figures['seconds']:.0f} s; "
            f"{floor / rate:,.0f}x slower than parsing)"
        )
        bundles = figures["bundles"]
        print(
            f"   conditional-update Bundles         {bundles['records_per_s']:12,.0f} records/s  "
            f"({bundles['entries']:,} entries, mapped beforehand; clinical ingest / Bundles = "
            f"{rate / bundles['records_per_s']:.2f}x, target >= 1.00x)"
        )
        checkpoint = figures.get("checkpoint_rss_mib")
        if checkpoint is not None:
            print(
                f"   RSS at row {results['checkpoint']:,}: {checkpoint:.0f} MiB, at row {figures['records']:,}: "
                f"{figures['end_rss_mib']:.0f} MiB (peak {figures['checkpoint_peak_mib']:.0f} -> "
                f"{figures['end_peak_mib']:.0f} MiB)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clinical_ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="CSV rows (default 100000)")
    parser.add_argument("--checkpoint", type=int, default=10_000, help="row at which memory is read first")
    parser.add_argument("--map-rows", type=int, default=5_000, help="rows of the mapping-only baseline")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--child", nargs=2, metavar=("DATABASE_URL", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--bundles-child", nargs=2, metavar=("DATABASE_URL", "CSV"), help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=200, help="records per transaction (both paths)")
    arguments = parser.parse_args(argv)
    if arguments.bundles_child:
        url, path = arguments.bundles_child
        print(json.dumps(bundles_child(url, Path(path), arguments.batch_size)))
        return 0
    if arguments.child:
        url, path = arguments.child
        print(json.dumps(child(url, Path(path), arguments.checkpoint, arguments.map_rows)))
        return 0
    results = run(arguments)
    report(results)
    if arguments.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
