"""The audit trail's commit path alone: records/s and latency of recording from N concurrent requests.

Each asyncio task stands for a request being answered by the access-control middleware: it hands
over its record and waits until it is committed (before group commit: ``AuditLog.record`` in a
worker thread, as the middleware did; after: ``AuditLog.record_async``). Without HTTP, token checks
and FHIR reads around it, this shows what the trail itself can take, and how group commit (many
waiting requests' records in one transaction) changes it. Run it against another checkout with
``--source`` (e.g. an export of main) to compare in one run:

    python -m benchmarks.audit_commit                        # SQLite and PostgreSQL, 1 and 16 requests at once
    python -m benchmarks.audit_commit --source /tmp/main --source . --records 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEY = "benchmark-site-secret-0123456789"

# Runs in a subprocess with the checkout under test first on the path: it uses only what both the
# old trail and the new one offer (Services.audit_log, AuditEntry, AuditLog.record).
MEASURE = """
import asyncio, json, statistics, sys, time
from starlette.concurrency import run_in_threadpool
from fhir_bridge import Settings
from fhir_bridge.audit.log import AuditEntry, now_us
from fhir_bridge.services import Services

url, tasks, records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
services = Services.from_settings(Settings(database_url=url, pseudonym_key=sys.argv[4], auth="none"))
trail = services.audit_log
latencies = []

def entry(n):
    return AuditEntry(now_us(), "bench", "read", "R", "GET", f"/fhir/Patient/p{n}", None, f"Patient/p{n}",
                      "Patient", 200, None, "127.0.0.1")

async def record(item):  # what the access-control middleware does with a request's record
    if hasattr(trail, "record_async"):
        await trail.record_async([item])
    else:  # the trail before group commit: each record its own transaction, in a worker thread
        await run_in_threadpool(trail.record, item)

async def work(worker):
    for n in range(records):
        begin = time.perf_counter()
        await record(entry(worker * records + n))
        latencies.append(time.perf_counter() - begin)

async def main():
    for n in range(20):
        await record(entry(n))
    latencies.clear()
    started = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(tasks)))
    return time.perf_counter() - started

elapsed = asyncio.run(main())
latencies.sort()
print(json.dumps({"records_s": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
                  "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000}))
services.close()
"""


def measure(source: Path, url: str, tasks: int, records: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(source)}
    environment.pop("FHIR_BRIDGE_PSEUDONYM_KEY_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, url, str(tasks), str(records), KEY],
        env=environment,
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--tasks", default="1,16")
    parser.add_argument("--records", type=int, default=200, help="records per request stream")
    parser.add_argument("--source", type=Path, action="append", help="checkouts to compare (default: this one)")
    arguments = parser.parse_args()
    from benchmarks.dicom_ingest import postgres_schema

    sources = [s.resolve() for s in arguments.source or [Path(__file__).resolve().parent.parent]]
    print(f"{'source':28}{'database':12}{'tasks':>8}{'records/s':>11}{'p50 ms':>9}{'p95 ms':>9}")
    for kind in arguments.databases.split(","):
        for tasks in (int(t) for t in arguments.tasks.split(",")):
            for source in sources:
                if kind == "sqlite":
                    with tempfile.TemporaryDirectory() as folder:
                        result = measure(source, f"sqlite:///{folder}/store.db", tasks, arguments.records)
                else:
                    with postgres_schema(arguments.postgres_url) as url:
                        result = measure(source, url, tasks, arguments.records)
                print(
                    f"{str(source)[-28:]:28}{kind:12}{tasks:8}{result['records_s']:11.0f}"
                    f"{result['p50_ms']:9.2f}{result['p95_ms']:9.2f}"
                )


if __name__ == "__main__":
    main()
