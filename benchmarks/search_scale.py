"""Search at archive scale: 100,000 ImagingStudies (about 10 series each) and their Patients.

For each database the store is loaded through the store's own write path (index extraction
included, validation skipped: the data is generated valid), then the real app runs under
uvicorn (as ``fhir-bridge serve``) and one keep-alive client measures the issue's typical
queries. The baseline, measured in the same run against the same server, is a read of one
ImagingStudy by id; every latency is printed with its ratio to it. Paging through every study
with ``_count=1000`` is timed page by page, so that a growing cost would show.

    python -m benchmarks.search_scale --studies 100000 --databases sqlite,postgresql

``--explain`` prints the SQL and the database's plan of each query whose p95 misses the target.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.store_api import DEFAULT_POSTGRES_URL, percentile, postgres_schema, running_server
from fhir_bridge.cli import explain_search
from fhir_bridge.search.index import index_entries
from fhir_bridge.store.database import create_engines, refresh_statistics
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.store import Store

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
MRN = "urn:oid:1.2.826.0.1.3680043.10.9999.1"
UID_ROOT = "1.2.826.0.1.3680043.10.9998"
MODALITIES = ("CT", "MR", "PT", "CR", "US", "MG", "NM", "DX")
BODY_SITES = ("51185008", "818981001", "69536005", "12738006", "76752008", "41216001", "10200004", "39607008")
SERIES_PER_STUDY = 10
INSTANCES_PER_SERIES = 2
STUDIES_PER_PATIENT = 3
BATCH = 500  # resources per write transaction while loading
SELECTIVE_P95_TARGET_MS = 50.0
COUNT_TARGET_MS = 200.0


def patient(index: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{index}",
        "identifier": [{"system": MRN, "value": f"mrn-{index}"}],
        "gender": ("female", "male")[index % 2],
        "birthDate": str(1930 + index % 70),
    }


def study(
    index: int,
    rng: random.Random,
    *,
    series_count: int = SERIES_PER_STUDY,
    instances: int = INSTANCES_PER_SERIES,
    subject: int | None = None,
) -> dict[str, Any]:
    """The ImagingStudy ``s{index}`` of Patient ``p{subject}`` (default: STUDIES_PER_PATIENT studies a Patient)."""
    modality = MODALITIES[rng.randrange(len(MODALITIES))]
    site = BODY_SITES[rng.randrange(len(BODY_SITES))]
    started = f"20{rng.randrange(15, 25):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T10:00:00Z"
    uid = f"{UID_ROOT}.{index}"
    series = [
        {
            "uid": f"{uid}.{s}",
            "number": s,
            "modality": {"system": DCM, "code": modality},
            "bodySite": {"system": SNOMED, "code": site},
            "numberOfInstances": instances,
            "instance": [
                {
                    "uid": f"{uid}.{s}.{i}",
                    "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"},
                    "number": i,
                }
                for i in range(1, instances + 1)
            ],
        }
        for s in range(1, series_count + 1)
    ]
    return {
        "resourceType": "ImagingStudy",
        "id": f"s{index}",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "status": "available",
        "subject": {"reference": f"Patient/p{index // STUDIES_PER_PATIENT if subject is None else subject}"},
        "started": started,
        "modality": [{"system": DCM, "code": modality}],
        "numberOfSeries": series_count,
        "numberOfInstances": series_count * instances,
        "series": series,
    }


def write_all(store: Store, resources: Iterable[dict[str, Any]], label: str, previous: Any = None) -> int:
    """Write ``resources`` through Store.write() (index extraction included, validation skipped), BATCH
    to a transaction; ``previous=None`` promises new ids (no lookup), ``LOOKUP`` updates. Returns the count."""
    written, iterator = 0, iter(resources)
    while batch := list(itertools.islice(iterator, BATCH)):
        with store.write() as session:
            for resource in batch:
                session.put(resource, "PUT", previous)
        written += len(batch)
        if written % 20000 < BATCH:
            print(f"    {label}: {written:,}", file=sys.stderr, flush=True)
    return written


def load(database_url: str, studies: int, seed: int) -> float:
    """Write the data set through Store.write(); returns resources per second."""
    engines = create_engines(database_url)
    prepare_schema(engines)
    store = Store(engines, indexer=index_entries)
    rng = random.Random(seed)
    patients = (studies + STUDIES_PER_PATIENT - 1) // STUDIES_PER_PATIENT
    started = time.perf_counter()
    written = write_all(store, (patient(i) for i in range(patients)), "Patients")
    written += write_all(store, (study(i, rng) for i in range(studies)), "studies")
    seconds = time.perf_counter() - started
    refresh_statistics(engines)  # what the store does by itself as it grows
    engines.dispose()
    return written / seconds


@dataclass
class Measured:
    label: str
    milliseconds: list[float]
    target_ms: float | None
    baseline_p50: float
    query: str = ""

    @property
    def p50(self) -> float:
        return percentile(sorted(self.milliseconds), 0.5)

    @property
    def p95(self) -> float:
        return percentile(sorted(self.milliseconds), 0.95)

    @property
    def passed(self) -> bool | None:
        return None if self.target_ms is None else self.p95 < self.target_ms


def timed(client: httpx.Client, urls: Sequence[str]) -> tuple[list[float], list[dict[str, Any]]]:
    times, bodies = [], []
    for url in urls:
        began = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        bodies.append(response.json())
    return times, bodies


def page_through(client: httpx.Client, url: str) -> tuple[int, list[float]]:
    """Follow next links; returns the number of resources seen and each page's milliseconds."""
    seen, pages = 0, []
    while url:
        began = time.perf_counter()
        bundle = client.get(url).json()
        pages.append((time.perf_counter() - began) * 1000)
        seen += sum(1 for e in bundle["entry"] if e["search"]["mode"] == "match")
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return seen, pages


def measure(base: str, studies: int, samples: int, seed: int) -> tuple[list[Measured], dict[str, Any]]:
    rng = random.Random(seed + 1)
    patients = (studies + STUDIES_PER_PATIENT - 1) // STUDIES_PER_PATIENT
    fhir = f"{base}/fhir"
    with httpx.Client(base_url=fhir, timeout=120) as client:
        for _ in range(20):
            client.get("/ImagingStudy/s0")  # warm up
        baseline_times, _ = timed(client, [f"/ImagingStudy/s{rng.randrange(studies)}" for _ in range(samples)])
        floor = percentile(sorted(baseline_times), 0.5)

        def months() -> str:
            year, month = rng.randrange(15, 25), rng.randrange(1, 12)
            return f"started=ge20{year:02d}-{month:02d}-01&started=lt20{year:02d}-{month + 1:02d}-01"

        def urls(make: Any, count: int = samples) -> list[str]:
            return [make() for _ in range(count)]

        selective = SELECTIVE_P95_TARGET_MS
        queries: list[tuple[str, list[str], float | None]] = [
            ("by patient", urls(lambda: f"/ImagingStudy?patient=Patient/p{rng.randrange(patients)}"), selective),
            (
                "modality + started (one month)",
                urls(lambda: f"/ImagingStudy?modality={rng.choice(MODALITIES)}&{months()}"),
                selective,
            ),
            (
                "by identifier",
                urls(lambda: f"/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{UID_ROOT}.{rng.randrange(studies)}"),
                selective,
            ),
            (
                "20 identifiers ORed",
                urls(
                    lambda: (
                        "/ImagingStudy?identifier="
                        + ",".join(f"urn:dicom:uid|urn:oid:{UID_ROOT}.{rng.randrange(studies)}" for _ in range(20))
                    )
                ),
                selective,
            ),
            (
                "chained: subject:Patient.identifier",
                urls(lambda: f"/ImagingStudy?subject:Patient.identifier={MRN}|mrn-{rng.randrange(patients)}"),
                selective,
            ),
            (
                "_include=ImagingStudy:subject (by patient)",
                urls(lambda: f"/ImagingStudy?patient=Patient/p{rng.randrange(patients)}&_include=ImagingStudy:subject"),
                selective,
            ),
            (
                "_summary=count over all studies",
                urls(lambda: "/ImagingStudy?_summary=count", max(5, samples // 10)),
                COUNT_TARGET_MS,
            ),
        ]
        results = []
        for label, urls, target in queries:
            times, bodies = timed(client, urls)
            if label.startswith("_summary"):
                assert bodies[0]["total"] == studies, bodies[0]
            results.append(Measured(label, times, target, floor, urls[0]))
        began = time.perf_counter()
        seen, pages = page_through(client, "/ImagingStudy?_count=1000")
        paging = {"seconds": time.perf_counter() - began, "seen": seen, "pages": pages}
        if seen != studies:
            raise RuntimeError(f"paging saw {seen} studies, not {studies}")
    baseline = Measured("baseline: read ImagingStudy/{id}", baseline_times, None, floor)
    return [baseline, *results], paging


def explain(database_url: str, query: str) -> str:
    _sql, plan = explain_search(database_url, query)
    return "      " + "\n      ".join(plan)


def run(database: str, database_url: str, options: argparse.Namespace, directory: Path) -> None:
    print(f"\n== {database}: loading {options.studies:,} studies ==", flush=True)
    rate = load(database_url, options.studies, options.seed)
    print(f"  load through the write path: {rate:,.0f} resources/s (validation skipped)")
    with running_server(database_url, directory / f"{database}.log") as server:
        results, paging = measure(server.base, options.studies, options.samples, options.seed)
    header = f"  {'query':45} {'p50 ms':>8} {'p95 ms':>8} {'p50/base':>9} {'target p95':>11} result"
    print(header)
    for result in results:
        target = f"< {result.target_ms:.0f} ms" if result.target_ms else ""
        verdict = {None: "", True: "ok", False: "MISS"}[result.passed]
        ratio = result.p50 / result.baseline_p50
        print(f"  {result.label:45} {result.p50:8.2f} {result.p95:8.2f} {ratio:9.2f} {target:>11} {verdict}")
        if options.explain and result.passed is False:
            print(f"    plan of {result.query}:\n{explain(database_url, result.query)}")
    pages = paging["pages"]
    first, last = sum(pages[:3]) / 3, sum(pages[-3:]) / 3
    print(
        f"  paging all {paging['seen']:,} studies with _count=1000: {paging['seconds']:.1f} s in {len(pages)} pages; "
        f"first three pages {first:.0f} ms each, last three {last:.0f} ms each (ratio {last / first:.2f})"
    )


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(prog="python -m benchmarks.search_scale", description=__doc__.split("\n")[0])
    arguments.add_argument("--studies", type=int, default=100_000)
    arguments.add_argument("--samples", type=int, default=200, help="requests per query kind")
    arguments.add_argument("--databases", default="sqlite,postgresql")
    arguments.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    arguments.add_argument("--seed", type=int, default=7)
    arguments.add_argument("--explain", action="store_true", help="print the plan of queries that miss the target")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    print(
        f"search at scale: {options.studies:,} ImagingStudies x {SERIES_PER_STUDY} series x "
        f"{INSTANCES_PER_SERIES} instances, {STUDIES_PER_PATIENT} studies per Patient"
    )
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-scale-") as scratch:
        directory = Path(scratch)
        for database in options.databases.split(","):
            if database == "sqlite":
                run(database, f"sqlite:///{directory / 'store.db'}", options, directory)
            else:
                with postgres_schema(options.postgres_url) as url:
                    run(database, url, options, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
