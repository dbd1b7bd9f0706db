"""PostgreSQL at archive size (issue 16, part 3): a hospital archive's mix, loaded and measured on PostgreSQL.

The mix is the issue's, scaled by ``--scale`` (1.0: 300,000 Patients, 1,000,000 ImagingStudies of 3
series with 3 instances each, about 3 KB, and 2,000,000 Observations; the default 0.1 loads in
minutes on a small machine). It is written through the store's write path (``Store.write``, index
extraction and reference checks included, validation skipped: the data is generated valid; the
loader is ``search_scale``'s), then 1 % of the resources are updated, and ``VACUUM (ANALYZE)`` runs
on the store's tables (what autovacuum does on a default server). Then the real app runs under
uvicorn (as ``fhir-bridge serve``) and one keep-alive client measures, in one run:

- selective searches (``Patient?identifier=``, ``ImagingStudy?patient=``,
  ``ImagingStudy?modality=&started=``, ``Observation?subject=&code=``), interleaved round by round
  with reads by id (the baseline): target p95 at most 4x the reads' p95;
- ``_summary=count`` over whole types: target at most 200 ms (p95);
- ``_history?_since=`` the instant before the 1 % of updates: its first page, and paging through it;
- the catalogue statistics (``GET /catalogue`` computed afresh, ``/catalogue/counts``): at most 10 s;
- a full system ``$export``: target at least 20,000 resources/s, with the server's RSS sampled while
  it runs (flat: the second half's peak within 10 % of the first half's), against a streamed
  ``SELECT content`` of the same rows (``bulk_export``'s baseline, in a process of its own).

    python -m benchmarks.archive                 # scale 0.1: 30,000 Patients, 100,000 studies, 200,000 Observations
    python -m benchmarks.archive --scale 1       # the issue's full size
    python -m benchmarks.archive --explain       # + the plan of every search that misses its target
    python -m benchmarks.archive --schema arch   # load into schema "arch" and keep it; a later run
                                                 # with the same --schema measures it again, unloaded

Load rate and the size on disk of every table (``pg_total_relation_size``) are printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from benchmarks import bulk_export, search_scale
from benchmarks.store_api import DEFAULT_POSTGRES_URL, percentile, postgres_schema, running_server
from fhir_bridge.search.index import index_entries
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.store import LOOKUP, Store

FULL = {"Patient": 300_000, "ImagingStudy": 1_000_000, "Observation": 2_000_000}
SERIES, INSTANCES = 3, 3
LOINC = "http://loinc.org"
CODES = (  # LOINC code, display, UCUM unit, typical value
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 1.0),
    ("33914-3", "Glomerular filtration rate/1.73 sq M.predicted", "mL/min/{1.73_m2}", 80.0),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 100.0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 14.0),
    ("29463-7", "Body weight", "kg", 75.0),
    ("8302-2", "Body height", "cm", 170.0),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 25.0),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 125.0),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 4.2),
    ("2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma", "ng/mL", 2.0),
)
DESCRIPTIONS = {"CT": "CT with contrast", "MR": "MR without contrast", "PT": "PET/CT whole body"}
SEARCH_RATIO_TARGET = 4.0  # selective search p95 <= 4x read p95
COUNT_TARGET_MS = 200.0
EXPORT_TARGET = 20_000.0  # resources/s
CATALOGUE_TARGET_S = 10.0
FLAT_TOLERANCE = 1.10  # the export's RSS peak in its second half within 10 % of the first half's
UPDATED_SHARE = 0.01


@dataclass(frozen=True)
class Mix:
    patients: int
    studies: int
    observations: int

    @classmethod
    def scaled(cls, scale: float) -> Mix:
        return cls(*(max(1, round(FULL[kind] * scale)) for kind in ("Patient", "ImagingStudy", "Observation")))

    @property
    def total(self) -> int:
        return self.patients + self.studies + self.observations


# the data ------------------------------------------------------------------------------------------
def patient(index: int) -> dict[str, Any]:
    resource = search_scale.patient(index)
    resource["name"] = [{"family": f"Family{index % 997}", "given": [f"Given{index % 89}"]}]
    return resource


def study(index: int, rng: random.Random, mix: Mix) -> dict[str, Any]:
    """search_scale's study with 3 series of 3 instances and the descriptions a PACS keeps (~3 KB)."""
    resource = search_scale.study(index, rng, series_count=SERIES, instances=INSTANCES, subject=index % mix.patients)
    modality = resource["modality"][0]["code"]
    resource["description"] = f"{DESCRIPTIONS.get(modality, modality)} (accession {index:09d})"
    for series in resource["series"]:
        series["description"] = f"{modality} series {series['number']} axial 1.25 mm"
        series["bodySite"]["display"] = f"body structure {series['bodySite']['code']}"
        for instance in series["instance"]:
            instance["title"] = f"{modality} image {series['number']}.{instance['number']}"
    return resource


def observation_subject(index: int, mix: Mix) -> int:
    """Observation ``o{index}`` belongs to study ``s{index // 2 mod studies}``'s Patient (two a study)."""
    return ((index // 2) % mix.studies) % mix.patients


def observation_code(index: int) -> str:
    return CODES[index % len(CODES)][0]


def observation(index: int, rng: random.Random, mix: Mix, status: str = "final") -> dict[str, Any]:
    code, display, unit, typical = CODES[index % len(CODES)]
    return {
        "resourceType": "Observation",
        "id": f"o{index}",
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/p{observation_subject(index, mix)}"},
        "effectiveDateTime": f"20{rng.randrange(15, 25):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        "T09:30:00Z",
        "valueQuantity": {
            "value": round(typical * rng.uniform(0.6, 1.4), 2),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


# loading -----------------------------------------------------------------------------------------
def _vacuum(database_url: str) -> float:
    """VACUUM (ANALYZE) of the store's tables: what autovacuum does on a default server (the visibility
    map that lets counts read indexes alone, and the planner's statistics)."""
    from sqlmodel import SQLModel

    engines = create_engines(database_url)
    started = time.perf_counter()
    with engines.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in SQLModel.metadata.sorted_tables:
            connection.exec_driver_sql(f'VACUUM (ANALYZE) "{table.name}"')
    engines.dispose()
    return time.perf_counter() - started


def load(database_url: str, mix: Mix, seed: int) -> dict[str, Any]:
    """The mix through Store.write, then 1 % of it updated (Observations amended); seconds of each step."""
    engines = create_engines(database_url)
    prepare_schema(engines)
    store = Store(engines, indexer=index_entries)
    rng = random.Random(seed)
    steps: dict[str, Any] = {}

    def step(name: str, count: int, resources: Iterator[dict[str, Any]], previous: Any = None) -> None:
        started = time.perf_counter()
        written = search_scale.write_all(store, resources, name, previous)
        seconds = time.perf_counter() - started
        assert written == count, (name, written, count)
        steps[name] = {"resources": written, "seconds": seconds, "rate": written / seconds}
        print(f"  {name}: {written:,} in {seconds:,.1f} s = {written / seconds:,.0f} resources/s", flush=True)

    step("Patient", mix.patients, (patient(i) for i in range(mix.patients)))
    step("ImagingStudy", mix.studies, (study(i, rng, mix) for i in range(mix.studies)))
    step("Observation", mix.observations, (observation(i, rng, mix) for i in range(mix.observations)))
    # the instant before the updates, at millisecond precision (as a client would hold a transactionTime)
    with engines.reader.connect() as connection:
        last = connection.execute(text("SELECT last_updated FROM commit_clock")).scalar_one()
    since_ms = last // 1000 + 1
    while time.time_ns() // 1_000_000 <= since_ms:
        time.sleep(0.001)
    updated = max(1, round(mix.total * UPDATED_SHARE))
    chosen = sorted(rng.sample(range(mix.observations), min(updated, mix.observations)))
    step("update", len(chosen), (observation(i, rng, mix, "amended") for i in chosen), LOOKUP)
    engines.dispose()
    vacuum = _vacuum(database_url)
    print(f"  VACUUM (ANALYZE) of the store's tables: {vacuum:,.1f} s", flush=True)
    since = datetime.fromtimestamp(since_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"steps": steps, "vacuum_seconds": vacuum, "since": since, "updated": len(chosen)}


_LOADED = "benchmark.archive.load"  # a store_info key: the load's figures, kept with a --schema


def _remember(database_url: str, loaded: dict[str, Any]) -> None:
    engines = create_engines(database_url)
    with engines.writer.begin() as connection:
        connection.execute(
            text("INSERT INTO store_info (key, value) VALUES (:k, :v)"), {"k": _LOADED, "v": json.dumps(loaded)}
        )
    engines.dispose()


def _loaded(database_url: str) -> dict[str, Any] | None:
    """The load figures of a kept schema, None when it holds no loaded store."""
    engines = create_engines(database_url)
    try:
        with engines.reader.connect() as connection:
            if connection.execute(text("SELECT to_regclass('store_info')")).scalar() is None:
                return None
            value = connection.execute(text("SELECT value FROM store_info WHERE key = :k"), {"k": _LOADED}).scalar()
    finally:
        engines.dispose()
    return json.loads(value) if value else None


def sizes(database_url: str) -> dict[str, int]:
    """Bytes on disk of each table of the schema (pg_total_relation_size: heap, TOAST and indexes)."""
    engine = create_engines(database_url)
    with engine.reader.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 2 DESC"
            )
        ).all()
        json_bytes = connection.execute(text("SELECT sum(octet_length(content)) FROM resource")).scalar_one()
    engine.dispose()
    return {"json (current versions)": int(json_bytes or 0), **{name: int(size) for name, size in rows}}


# measuring ---------------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    milliseconds: list[float] = field(default_factory=list)
    query: str = ""

    @property
    def p50(self) -> float:
        return percentile(sorted(self.milliseconds), 0.5)

    @property
    def p95(self) -> float:
        return percentile(sorted(self.milliseconds), 0.95)


def _get(client: httpx.Client, url: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    began = time.perf_counter()
    response = client.get(url, **kwargs)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
    return elapsed, response


def searches(client: httpx.Client, mix: Mix, samples: int, rng: random.Random) -> tuple[Row, list[Row]]:
    """Reads by id and the selective searches, interleaved round by round (the load moves under a run)."""

    def month() -> str:
        year, month = rng.randrange(15, 25), rng.randrange(1, 12)
        return f"started=ge20{year:02d}-{month:02d}-01&started=lt20{year:02d}-{month + 1:02d}-01"

    def observation_search() -> str:
        index = rng.randrange(mix.observations)
        subject, code = observation_subject(index, mix), observation_code(index)
        return f"/Observation?subject=Patient/p{subject}&code={LOINC}|{code}"

    kinds = {
        "Patient?identifier=": lambda: f"/Patient?identifier={search_scale.MRN}|mrn-{rng.randrange(mix.patients)}",
        "ImagingStudy?patient=": lambda: f"/ImagingStudy?patient=Patient/p{rng.randrange(mix.patients)}",
        "ImagingStudy?modality=&started= (one month)": lambda: (
            f"/ImagingStudy?modality={rng.choice(search_scale.MODALITIES)}&{month()}"
        ),
        "Observation?subject=&code=": observation_search,
    }
    reads = [
        lambda: f"/Patient/p{rng.randrange(mix.patients)}",
        lambda: f"/ImagingStudy/s{rng.randrange(mix.studies)}",
        lambda: f"/Observation/o{rng.randrange(mix.observations)}",
    ]
    baseline = Row("read by id (Patient, ImagingStudy, Observation)")
    rows = {label: Row(label) for label in kinds}
    for _ in range(20):  # warm up
        _get(client, reads[1]())
    for sample in range(samples):
        url = reads[sample % len(reads)]()
        baseline.milliseconds.append(_get(client, url)[0])
        for label, make in kinds.items():
            url = make()
            elapsed, response = _get(client, url)
            rows[label].milliseconds.append(elapsed)
            rows[label].query = rows[label].query or url
            if label == "Patient?identifier=" and len(response.json().get("entry", [])) != 1:
                raise RuntimeError(f"{url} did not find its one Patient")
    return baseline, list(rows.values())


def counts(client: httpx.Client, mix: Mix, samples: int) -> list[Row]:
    expected = {"Patient": mix.patients, "ImagingStudy": mix.studies, "Observation": mix.observations}
    queries = [f"/{kind}?_summary=count" for kind in expected] + ["/ImagingStudy?modality=CT&_summary=count"]
    rows = [Row(f"{query.lstrip('/')}", query=query) for query in queries]
    for _ in range(samples):
        for row in rows:
            elapsed, response = _get(client, row.query)
            row.milliseconds.append(elapsed)
            kind = row.query.lstrip("/").partition("?")[0]
            if "modality" not in row.query and response.json()["total"] != expected[kind]:
                raise RuntimeError(f"{row.query}: total {response.json()['total']}, not {expected[kind]}")
    return rows


def history(client: httpx.Client, since: str, updated: int, samples: int) -> dict[str, Any]:
    first = Row("_history?_since= (first page of 20)", query=f"/_history?_since={since}")
    for _ in range(samples):
        elapsed, response = _get(client, first.query)
        first.milliseconds.append(elapsed)
        if response.json()["total"] != updated:
            raise RuntimeError(f"{first.query}: total {response.json()['total']}, not {updated}")
    began, seen, pages = time.perf_counter(), 0, 0
    url: str | None = f"/_history?_since={since}&_count=1000"
    while url:
        _, response = _get(client, url)
        bundle = response.json()
        seen += len(bundle.get("entry", []))
        pages += 1
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    seconds = time.perf_counter() - began
    if seen != updated:
        raise RuntimeError(f"_history?_since={since} listed {seen} versions, not {updated}")
    return {"first_page": first, "seconds": seconds, "versions": seen, "pages": pages}


def catalogue(client: httpx.Client, root: str, samples: int) -> list[Row]:
    """GET /catalogue computed afresh (a write between samples moves the commit the statistics are
    cached on; the server runs with FHIR_BRIDGE_CATALOGUE_CACHE_SECONDS=0) and /catalogue/counts."""
    description = Row("GET /catalogue (statistics computed afresh)", query=f"{root}/catalogue")
    queries = ["", "?modality=CT", "?stratify=modality", "?sex=female&modality=MR&stratify=bodypart"]
    rows = [description] + [Row(f"GET /catalogue/counts{q}", query=f"{root}/catalogue/counts{q}") for q in queries]
    for sample in range(samples):
        touch = {"resourceType": "Patient", "id": f"catalogue-touch-{sample}", "gender": "other"}
        response = client.put(f"/Patient/{touch['id']}", json=touch, headers={"content-type": "application/fhir+json"})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"PUT Patient: {response.status_code} {response.text[:300]}")
        for row in rows:
            row.milliseconds.append(_get(client, row.query, headers={"accept": "application/ld+json"})[0])
    for sample in range(samples):  # gone again: the store holds the mix alone (a kept schema is measured again)
        client.delete(f"/Patient/catalogue-touch-{sample}")
    return rows


class RssSampler:
    """The server process's RSS (VmRSS of /proc/<pid>/status) every 0.2 s, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.perf_counter() - self._started, self.rss_kib()))

    def stop(self) -> tuple[int, int]:
        """Peak RSS (KiB) in the first and in the second half of the sampled time."""
        self._stop.set()
        self._thread.join()
        end = time.perf_counter() - self._started
        first = [kib for at, kib in self.samples if at <= end / 2] or [self.rss_kib()]
        second = [kib for at, kib in self.samples if at > end / 2] or [self.rss_kib()]
        return max(first), max(second)


def export(client: httpx.Client, pid: int, expected: int) -> dict[str, Any]:
    """A full system $export through the API: kick-off, status polled every 0.2 s, then every file read back."""
    sampler = RssSampler(pid)
    start_rss = sampler.rss_kib()
    began = time.perf_counter()
    kick = client.get("/$export", headers={"prefer": "respond-async", "accept": "application/fhir+json"})
    if kick.status_code != 202:
        raise RuntimeError(f"$export kick-off: {kick.status_code} {kick.text[:300]}")
    status_url = kick.headers["content-location"]
    while (status := client.get(status_url)).status_code == 202:
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    first_half, second_half = sampler.stop()
    if status.status_code != 200:
        raise RuntimeError(f"$export status: {status.status_code} {status.text[:300]}")
    manifest = status.json()
    exported = sum(item["count"] for item in manifest["output"])
    began, lines = time.perf_counter(), 0
    for item in manifest["output"]:
        with client.stream("GET", item["url"]) as response:
            for line in response.iter_lines():
                lines += bool(line.strip())
    download = time.perf_counter() - began
    if not exported == lines == expected:
        raise RuntimeError(f"$export: manifest {exported}, lines {lines}, expected {expected} resources")
    return {
        "resources": exported,
        "seconds": seconds,
        "rate": exported / seconds,
        "files": len(manifest["output"]),
        "download_seconds": download,
        "start_rss_kib": start_rss,
        "rss_first_half_kib": first_half,
        "rss_second_half_kib": second_half,
    }


# the run -----------------------------------------------------------------------------------------
@contextmanager
def catalogue_uncached() -> Iterator[None]:
    old = os.environ.get("FHIR_BRIDGE_CATALOGUE_CACHE_SECONDS")
    os.environ["FHIR_BRIDGE_CATALOGUE_CACHE_SECONDS"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FHIR_BRIDGE_CATALOGUE_CACHE_SECONDS"]
        else:
            os.environ["FHIR_BRIDGE_CATALOGUE_CACHE_SECONDS"] = old


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def _mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def versions(database_url: str) -> dict[str, str]:
    import importlib.metadata

    engines = create_engines(database_url)
    with engines.reader.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar_one()
        settings = {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "work_mem", "autovacuum")
        }
    engines.dispose()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "fhir-bridge": importlib.metadata.version("fhir-bridge"),
        "PostgreSQL": str(server),
        **{k: str(v) for k, v in settings.items()},
    }


def run(database_url: str, options: argparse.Namespace, directory: Path) -> dict[str, Any]:
    mix = Mix.scaled(options.scale)
    about = versions(database_url)
    print("  " + ", ".join(f"{k} {v}" for k, v in about.items()))
    print(
        f"== loading {mix.patients:,} Patients, {mix.studies:,} ImagingStudies ({SERIES} series x {INSTANCES} "
        f"instances), {mix.observations:,} Observations through Store.write (validation skipped)",
        flush=True,
    )
    loaded = _loaded(database_url) if options.schema else None
    if loaded is None:
        loaded = load(database_url, mix, options.seed)
        if options.schema:
            _remember(database_url, loaded)
    else:
        print(f"  (already loaded in schema {options.schema}: measured again; the load figures are the first run's)")
        engines = create_engines(database_url)
        prepare_schema(engines, upgrade=True)  # a kept schema of an older revision is upgraded, as an operator would
        with engines.writer.begin() as connection:
            # the last run's audit trail (chained under that run's throw-away key) and export files
            connection.execute(text("DROP TABLE IF EXISTS audit_event, audit_chain"))
            connection.execute(text("TRUNCATE bulk_chunk, bulk_file, bulk_job, bulk_job_client CASCADE"))
            # the versions since the instant: the updates and the last runs' catalogue touches
            since_us = int(datetime.fromisoformat(loaded["since"].replace("Z", "+00:00")).timestamp() * 1_000_000)
            loaded["updated"] = connection.execute(
                text("SELECT count(*) FROM resource_version WHERE last_updated >= :since"), {"since": since_us}
            ).scalar_one()
        engines.dispose()
        print(f"  VACUUM (ANALYZE) of the store's tables: {_vacuum(database_url):,.1f} s", flush=True)
    steps = loaded["steps"]
    load_seconds = sum(steps[kind]["seconds"] for kind in ("Patient", "ImagingStudy", "Observation"))
    disk = sizes(database_url)
    tables = {k: v for k, v in disk.items() if not k.startswith("json")}
    total_disk = sum(tables.values())
    print(f"  load: {mix.total:,} resources in {load_seconds:,.0f} s = {mix.total / load_seconds:,.0f} resources/s")
    print(f"== size on disk: {_mib(total_disk)} ({total_disk / mix.total:,.0f} bytes a resource)")
    for name, size in disk.items():
        if size >= 2**20 or name.startswith("json"):
            print(f"  {name:28} {_mib(size):>14}")
    print("== baseline: SELECT content FROM resource_version streamed to a file (bulk_export)", flush=True)
    baseline = bulk_export._run_phase("baseline", database_url, directory)
    (directory / "baseline.ndjson").unlink()
    rng = random.Random(options.seed + 1)
    server_log = directory / "server.log"
    with (
        catalogue_uncached(),
        running_server(database_url, server_log) as server,
        httpx.Client(base_url=f"{server.base}/fhir", timeout=600) as client,
    ):
        print("== searches against reads by id, interleaved", flush=True)
        read, selective = searches(client, mix, options.samples, rng)
        print("== counts", flush=True)
        counted = counts(client, mix, max(5, options.samples // 10))
        print("== history since the updates", flush=True)
        since = history(client, loaded["since"], loaded["updated"], max(5, options.samples // 10))
        print("== catalogue", flush=True)
        described = catalogue(client, server.base, options.catalogue_samples)
        print("== $export", flush=True)
        exported = export(client, server.pid, mix.total)
    results: list[dict[str, Any]] = []

    def add(label: str, value: str, target: str, passed: bool | None, query: str = "") -> None:
        results.append({"label": label, "value": value, "target": target, "pass": passed, "query": query})

    add(
        "load through Store.write",
        f"{mix.total / load_seconds:,.0f} resources/s",
        "",
        None,
    )
    add("size on disk", f"{_mib(total_disk)}", "", None)
    add(read.label, f"p50 {read.p50:.1f} ms, p95 {read.p95:.1f} ms", "baseline", None)
    for row in selective:
        ratio = row.p95 / read.p95
        add(
            row.label,
            f"p50 {row.p50:.1f} ms, p95 {row.p95:.1f} ms = {ratio:.2f}x read p95",
            f"p95 <= {SEARCH_RATIO_TARGET:g}x read",
            ratio <= SEARCH_RATIO_TARGET,
            row.query,
        )
    for row in counted:
        add(
            row.label,
            f"p50 {row.p50:.1f} ms, p95 {row.p95:.1f} ms",
            f"p95 <= {COUNT_TARGET_MS:g} ms",
            row.p95 <= COUNT_TARGET_MS,
            row.query,
        )
    first = since["first_page"]
    add(
        f"{first.label}, {since['versions']:,} versions",
        f"p50 {first.p50:.1f} ms, p95 {first.p95:.1f} ms = {first.p95 / read.p95:.2f}x read p95",
        "",
        None,
    )
    add(
        "_history?_since= paged with _count=1000",
        f"{since['versions'] / since['seconds']:,.0f} versions/s ({since['seconds']:.2f} s, {since['pages']} pages)",
        "",
        None,
    )
    for row in described:
        worst = max(row.milliseconds) / 1000
        add(row.label, f"{worst:.2f} s (worst of {len(row.milliseconds)})", f"<= {CATALOGUE_TARGET_S:g} s", None)
        results[-1]["pass"] = worst <= CATALOGUE_TARGET_S
    base_rate = baseline["lines"] / baseline["seconds"]
    add(
        "$export (system, all resources)",
        f"{exported['rate']:,.0f} resources/s ({exported['seconds']:.1f} s, {exported['files']} files) "
        f"= {exported['rate'] / base_rate:.2f}x a streamed SELECT ({base_rate:,.0f}/s)",
        f">= {EXPORT_TARGET:,.0f}/s",
        exported["rate"] >= EXPORT_TARGET,
    )
    flat = exported["rss_second_half_kib"] <= exported["rss_first_half_kib"] * FLAT_TOLERANCE
    add(
        "$export: server RSS peak, first half / second half",
        f"{exported['rss_first_half_kib'] / 1024:,.0f} / {exported['rss_second_half_kib'] / 1024:,.0f} MiB "
        f"(at start {exported['start_rss_kib'] / 1024:,.0f} MiB)",
        "flat (within 10 %)",
        flat,
    )
    add(
        "$export files read back",
        f"{exported['resources'] / exported['download_seconds']:,.0f} resources/s",
        "",
        None,
    )
    print(f"\n== PostgreSQL at archive size: scale {options.scale:g} ({mix.total:,} resources)")
    print(f"  {'measure':64} {'figure':64} {'target':22} result")
    for result in results:
        verdict = "" if result["pass"] is None else _verdict(result["pass"])
        print(f"  {result['label']:64} {result['value']:64} {result['target']:22} {verdict}")
    if options.explain:
        for result in results:
            if result["pass"] is False and result["query"].startswith("/") and "catalogue" not in result["query"]:
                print(f"\n  plan of {result['query']}:\n{search_scale.explain(database_url, result['query'])}")
    return {
        "scale": options.scale,
        "mix": mix.__dict__,
        "versions": about,
        "load": loaded,
        "sizes": disk,
        "baseline": baseline,
        "export": exported,
        "results": results,
    }


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(prog="python -m benchmarks.archive", description=__doc__.split("\n")[0])
    arguments.add_argument("--scale", type=float, default=0.1, help="share of the issue's full mix (default 0.1)")
    arguments.add_argument("--samples", type=int, default=200, help="requests per search kind")
    arguments.add_argument("--catalogue-samples", type=int, default=2, help="fresh computations of the catalogue")
    arguments.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    arguments.add_argument("--seed", type=int, default=7)
    arguments.add_argument("--explain", action="store_true", help="print the plan of searches that miss the target")
    arguments.add_argument("--json", action="store_true", help="also print every figure as one line of JSON, last")
    arguments.add_argument(
        "--schema",
        help="load into this schema and keep it (not dropped at the end); when it already holds a loaded store, "
        "measure that (upgraded to the newest revision first) without loading again",
    )
    return arguments


@contextmanager
def kept_schema(server_url: str, schema: str) -> Iterator[str]:
    """A URL whose search_path is ``schema``, created when missing and kept on exit."""
    from sqlalchemy import create_engine

    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in server_url else "?"
    yield f"{server_url}{separator}options=-csearch_path%3D{schema}"


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="fhir-bridge-archive-") as scratch,
        (
            kept_schema(options.postgres_url, options.schema)
            if options.schema
            else postgres_schema(options.postgres_url)
        ) as url,
    ):
        result = run(url, options, Path(scratch))
    if options.json:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
