"""Bulk ``$export`` benchmark: export a store of N resources, on SQLite and PostgreSQL.

For each database a store of N resources (half Patients, half ImagingStudies, shaped as in
``store_api``) is loaded through bulk SQL that writes what ``Store.write`` would (resource and
version rows, every search index row from the real extractor, the commit clock). Then, each in
a fresh process so that its peak RSS is its own:

- **baseline**: ``SELECT content FROM resource_version`` streamed into a file, the floor of
  reading the same data out of the same database;
- **export**: a system-level ``$export`` job run by the real worker (keyset batches at the pinned
  commit, NDJSON chunks committed to the database), then every file of its manifest read back
  chunk by chunk into a file, as the file route streams it.

The export's lines are checked to be exactly the stored JSON (an order-free checksum of the lines
equals the baseline's), and memory is sampled while it runs: flat means the second half of the
export peaks no higher than the first. ``python -m benchmarks.bulk_export --help`` for options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, update

from benchmarks.store_api import DEFAULT_POSTGRES_URL, Synthesizer, postgres_schema

REPO = Path(__file__).resolve().parents[1]
DATABASES = ("sqlite", "postgresql")
LOAD_BATCH = 5000  # resources per load transaction


# loading ----------------------------------------------------------------------------------------
# type, id, JSON, and index rows by table as tuples of INDEX_COLUMNS[kind] after (res_pk, res_type, seq_from)
Prepared = tuple[str, str, str, dict[str, list[tuple[Any, ...]]]]
ROW_KEYS = ("res_pk", "res_type", "seq_from")


def index_columns() -> dict[str, list[str]]:
    """The columns an index row is inserted with: ROW_KEYS, then the table's value columns."""
    from fhir_bridge.store.tables import INDEX_TABLES

    skip = {"id", "seq_to", *ROW_KEYS}
    return {kind: [c.name for c in table.columns if c.name not in skip] for kind, table in INDEX_TABLES.items()}


class Templates:
    """Distinct Patient + ImagingStudy pairs with their index rows from the real extractor, cloned
    with fresh ids: a clone's index rows are its template's with the study's subject re-pointed
    (the id is a column, not an index row), so loading costs inserts, not FHIRPath evaluation."""

    def __init__(self, pairs: int, seed: int = 1) -> None:
        from fhir_bridge.search.index import index_entries

        self.columns = index_columns()
        self.target = self.columns["reference"].index("target_id")
        synthesizer = Synthesizer(seed)
        self.pairs = []
        for n in range(pairs):
            patient = synthesizer.patient()
            patient["id"] = f"template-{n}"
            study = synthesizer.study(f"Patient/{patient['id']}")
            self.pairs.append((patient, self._rows(index_entries(patient)), study, self._rows(index_entries(study))))

    def _rows(self, entries: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
        return {kind: [tuple(e.get(c) for c in self.columns[kind]) for e in found] for kind, found in entries.items()}

    def clone(self, n: int, moment: str) -> tuple[Prepared, Prepared]:
        patient, patient_rows, study, study_rows = self.pairs[n % len(self.pairs)]
        patient_id, study_id = str(uuid.UUID(int=2 * n)), str(uuid.UUID(int=2 * n + 1))
        meta = {"versionId": "1", "lastUpdated": moment}
        new_patient = {**patient, "id": patient_id, "meta": meta}
        new_study = {**study, "id": study_id, "subject": {"reference": f"Patient/{patient_id}"}, "meta": meta}
        at = self.target
        rows = dict(study_rows)
        rows["reference"] = [
            (*row[:at], patient_id, *row[at + 1 :]) if row[at] == patient["id"] else row for row in rows["reference"]
        ]
        return (
            ("Patient", patient_id, orjson.dumps(new_patient).decode(), patient_rows),
            ("ImagingStudy", study_id, orjson.dumps(new_study).decode(), rows),
        )

    def check(self, clones: int = 20) -> None:
        """The cloned rows are what the extractor makes of the clone."""
        from fhir_bridge.search.index import index_entries

        for n in range(clones):
            for _, _, content, rows in self.clone(n, "2020-01-01T00:00:00Z"):
                made = self._rows(index_entries(orjson.loads(content)))
                assert {k: sorted(map(repr, v)) for k, v in made.items()} == {
                    k: sorted(map(repr, v)) for k, v in rows.items()
                }, f"clone {n}"


def _insert_sql(table: Any, columns: list[str], placeholder: str) -> str:
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))})"


def load(database_url: str, resources: int, templates: int) -> float:
    """Write ``resources`` resources as Store.write would, in transactions of LOAD_BATCH; seconds taken.

    Rows go in with the driver's executemany (SQLAlchemy's per-row parameter handling would be
    most of the time); pks are handed out under the commit clock's lock, as the store's inserts
    are, and PostgreSQL's pk sequence is moved past them at the end, so later writes work as usual.
    """
    from fhir_bridge.store.database import create_engines
    from fhir_bridge.store.migration import prepare_schema
    from fhir_bridge.store.tables import CLOCK, INDEX_TABLES, RESOURCE, VERSION
    from fhir_bridge.store.versions import format_instant

    started = time.perf_counter()
    source = Templates(min(templates, max(1, resources // 2)))
    source.check()
    engines = create_engines(database_url)
    prepare_schema(engines)
    placeholder = "?" if engines.writer.dialect.paramstyle == "qmark" else "%s"
    resource_columns = ["pk", "res_type", "res_id", "version", "seq", "last_updated", "deleted", "content"]
    version_columns = [*resource_columns[1:], "res_pk", "method"]
    columns_of = {kind: [*ROW_KEYS, *columns] for kind, columns in index_columns().items()}
    pairs_done = 0
    while 2 * pairs_done < resources:
        with engines.writer.begin() as connection:
            clock = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated).with_for_update()).one()
            first_pk = connection.execute(select(func.coalesce(func.max(RESOURCE.c.pk), 0))).scalar_one() + 1
            moment = max(clock.last_updated + 1, time.time_ns() // 1000)
            pairs = range(pairs_done, min(pairs_done + LOAD_BATCH // 2, (resources + 1) // 2))
            prepared = [item for n in pairs for item in source.clone(n, format_instant(moment))]
            rows = [
                (first_pk + k, t, i, 1, clock.seq + k + 1, moment, False, c) for k, (t, i, c, _) in enumerate(prepared)
            ]
            cursor = connection.connection.cursor()
            cursor.executemany(_insert_sql(RESOURCE, resource_columns, placeholder), rows)
            cursor.executemany(
                _insert_sql(VERSION, version_columns, placeholder), [(*row[1:], row[0], "POST") for row in rows]
            )
            for kind, columns in columns_of.items():
                index_rows = [
                    (row[0], row[1], row[4], *entry)
                    for row, (_, _, _, entries) in zip(rows, prepared, strict=True)
                    for entry in entries[kind]
                ]
                if index_rows:
                    cursor.executemany(_insert_sql(INDEX_TABLES[kind], columns, placeholder), index_rows)
            connection.execute(
                update(CLOCK).where(CLOCK.c.id == 1).values(seq=clock.seq + len(rows), last_updated=moment)
            )
        pairs_done = pairs.stop
        print(f"\r  loaded {2 * pairs_done:,} of {resources:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if engines.dialect == "postgresql":
        with engines.writer.begin() as connection:
            connection.exec_driver_sql("SELECT setval(pg_get_serial_sequence('resource', 'pk'), max(pk)) FROM resource")
            connection.exec_driver_sql("ANALYZE")
    engines.dispose()
    return time.perf_counter() - started


# the measured phases (each in its own process) ------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))


def _rss_kib() -> int:
    return _status_kib("VmRSS")


def _peak_rss_kib() -> int:
    """The process's peak RSS (VmHWM: unlike getrusage's ru_maxrss, not inherited across fork/exec)."""
    return _status_kib("VmHWM")


class Lines:
    """Writes NDJSON text to a file while counting lines and summing their hashes (order-free)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.count = 0
        self.checksum = 0
        self.bytes = 0

    def add_text(self, text: str) -> None:
        data = text.encode("utf-8")
        self.file.write(data)
        self.bytes += len(data)
        for line in data.splitlines():
            self.count += 1
            self.checksum = (self.checksum + int.from_bytes(hashlib.blake2b(line, digest_size=8).digest())) % (1 << 64)

    def close(self) -> dict[str, int]:
        self.file.close()
        return {"lines": self.count, "checksum": self.checksum, "bytes": self.bytes}


class Sampler:
    """Samples RSS every 0.2 s in a thread: (seconds since start, KiB)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.perf_counter() - self._started, _rss_kib()))

    def stop(self) -> tuple[int, int]:
        """The peak RSS of the first and of the second half of the run."""
        self._stop.set()
        self._thread.join()
        end = time.perf_counter() - self._started
        first = [kib for at, kib in self.samples if at <= end / 2] or [_rss_kib()]
        second = [kib for at, kib in self.samples if at > end / 2] or [_rss_kib()]
        return max(first), max(second)


def phase_baseline(database_url: str, directory: Path) -> dict[str, Any]:
    from sqlalchemy import text

    from fhir_bridge.store.database import create_engines

    engines = create_engines(database_url)
    start_rss = _rss_kib()
    out = Lines(directory / "baseline.ndjson")
    started = time.perf_counter()
    with engines.reader.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=10_000).execute(
            text("SELECT content FROM resource_version")
        )
        for partition in result.partitions():
            out.add_text("".join(f"{content}\n" for (content,) in partition))
    seconds = time.perf_counter() - started
    engines.dispose()
    return {"seconds": seconds, **out.close(), "start_rss_kib": start_rss, "peak_rss_kib": _peak_rss_kib()}


def phase_export(database_url: str, directory: Path) -> dict[str, Any]:
    from fhir_bridge.bulk.model import Status
    from fhir_bridge.bulk.service import BulkExports
    from fhir_bridge.store.database import create_engines

    engines = create_engines(database_url)
    exports = BulkExports(engines, threads=1)
    start_rss = _rss_kib()
    sampler = Sampler()
    started = time.perf_counter()
    job = exports.kick_off("system", [], lenient=False, request_url="benchmark")
    while (current := exports.jobs.get(job.id)).status is not Status.COMPLETED:
        if current.status is Status.FAILED:
            raise RuntimeError(f"the export failed: {current.error}")
        time.sleep(0.1)
    export_seconds = time.perf_counter() - started
    first_half, second_half = sampler.stop()
    export_peak = _peak_rss_kib()
    files = exports.files(job.id)
    out = Lines(directory / "export.ndjson")
    started = time.perf_counter()
    for item in files:
        for chunk in exports.jobs.chunks(item.id):
            out.add_text(chunk)
    download_seconds = time.perf_counter() - started
    exports.worker.stop()
    engines.dispose()
    return {
        "seconds": export_seconds,
        "download_seconds": download_seconds,
        "files": len(files),
        "chunks": sum(f.chunks for f in files),
        **out.close(),
        "start_rss_kib": start_rss,
        "peak_rss_kib": export_peak,
        "peak_rss_with_download_kib": _peak_rss_kib(),
        "rss_first_half_kib": first_half,
        "rss_second_half_kib": second_half,
    }


def _run_phase(phase: str, database_url: str, directory: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bulk_export", "--phase", phase, "--database-url", database_url]
    command += ["--directory", str(directory)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"the {phase} phase failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


# the run -----------------------------------------------------------------------------------------
@contextmanager
def database(kind: str, options: argparse.Namespace, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'store.db'}"
    else:
        with postgres_schema(options.postgres_url) as url:
            yield url


def run(kind: str, options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bulk-bench-") as scratch:
        directory = Path(scratch)
        with database(kind, options, directory) as url:
            print(f"== {kind}: loading {options.resources:,} resources", file=sys.stderr)
            load_seconds = load(url, options.resources, options.templates)
            print(f"== {kind}: baseline", file=sys.stderr)
            baseline = _run_phase("baseline", url, directory)
            (directory / "baseline.ndjson").unlink()
            print(f"== {kind}: export", file=sys.stderr)
            export = _run_phase("export", url, directory)
    if (export["lines"], export["checksum"]) != (baseline["lines"], baseline["checksum"]):
        raise RuntimeError(f"the export's lines differ from the stored resources: {export} vs {baseline}")
    return {
        "database": kind,
        "resources": options.resources,
        "load_seconds": load_seconds,
        "baseline": baseline,
        "export": export,
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(result: dict[str, Any]) -> str:
    n, base, export = result["resources"], result["baseline"], result["export"]
    base_rate, export_rate = n / base["seconds"], n / export["seconds"]
    serve_rate = n / export["download_seconds"]
    lines = [
        f"== {result['database']}: {n:,} resources ({base['bytes'] / 2**20:,.0f} MiB of NDJSON), "
        f"loaded in {result['load_seconds']:,.0f} s",
        f"  baseline  SELECT content streamed to a file    {base_rate:>10,.0f} resources/s  ({base['seconds']:.1f} s)",
        f"  export    $export job, chunks into the DB      {export_rate:>10,.0f} resources/s"
        f"  ({export['seconds']:.1f} s)  = {export_rate / base_rate:.2f} x baseline",
        f"  files     read back chunk by chunk to a file   {serve_rate:>10,.0f} resources/s  "
        f"({export['download_seconds']:.1f} s, {export['files']} files, {export['chunks']} chunks)"
        f"  = {serve_rate / base_rate:.2f} x baseline",
        f"  peak RSS  baseline {_mib(base['peak_rss_kib'])} (at start {_mib(base['start_rss_kib'])}), "
        f"export job {_mib(export['peak_rss_kib'])} (at start {_mib(export['start_rss_kib'])})"
        f"  = {export['peak_rss_kib'] / base['peak_rss_kib']:.2f} x baseline; "
        f"with the read-back {_mib(export['peak_rss_with_download_kib'])}",
        f"  flat      export RSS peak, first half {_mib(export['rss_first_half_kib'])}, "
        f"second half {_mib(export['rss_second_half_kib'])}",
        "  check     export lines = stored resources (count and order-free checksum): yes",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="python -m benchmarks.bulk_export", description=__doc__.split("\n\n")[0])
    command.add_argument("--resources", type=int, default=1_000_000, help="resources in the store (default 1,000,000)")
    command.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite, postgresql or both (comma-separated)"
    )
    command.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    command.add_argument(
        "--templates", type=int, default=2000, help="distinct Patient + ImagingStudy pairs the store is cloned from"
    )
    command.add_argument("--json", action="store_true", help="also print the figures as one line of JSON, last")
    command.add_argument("--phase", choices=("baseline", "export"), help=argparse.SUPPRESS)
    command.add_argument("--database-url", help=argparse.SUPPRESS)
    command.add_argument("--directory", type=Path, help=argparse.SUPPRESS)
    return command


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    if options.phase:
        phase = phase_baseline if options.phase == "baseline" else phase_export
        print(json.dumps(phase(options.database_url, options.directory)))
        return 0
    kinds = [k.strip() for k in options.databases.split(",") if k.strip()]
    if unknown := set(kinds) - set(DATABASES):
        parser().error(f"unknown databases {sorted(unknown)}: choose from {', '.join(DATABASES)}")
    if options.resources < 2:
        parser().error("--resources must be at least 2")
    results = []
    for kind in kinds:
        result = run(kind, options)
        results.append(result)
        print(report(result), flush=True)
    if options.json:
        print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
