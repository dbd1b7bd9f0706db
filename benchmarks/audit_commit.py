"""The audit trail's commit path alone: records/s and latency of ``AuditLog.record`` from N threads.

Each thread stands for a request being answered: it hands over one record and waits until it is
committed. Without HTTP, token checks and FHIR reads around it, this shows what the trail itself can
take, and how group commit (many waiting requests' records in one transaction) changes it. Run it
against another checkout with ``--source`` (e.g. an export of main) to compare in one run:

    python -m benchmarks.audit_commit                                  # SQLite and PostgreSQL, 1 and 16 threads
    python -m benchmarks.audit_commit --source /tmp/main --records 300
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
import json, statistics, sys, threading, time
from fhir_bridge import Settings
from fhir_bridge.audit.log import AuditEntry, now_us
from fhir_bridge.services import Services

url, threads, records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
services = Services.from_settings(Settings(database_url=url, pseudonym_key=sys.argv[4], auth="none"))
trail = services.audit_log
latencies = []

def entry(n):
    return AuditEntry(now_us(), "bench", "read", "R", "GET", f"/fhir/Patient/p{n}", None, f"Patient/p{n}",
                      "Patient", 200, None, "127.0.0.1")

def work(worker):
    mine = []
    for n in range(records):
        begin = time.perf_counter()
        trail.record(entry(worker * records + n))
        mine.append(time.perf_counter() - begin)
    latencies.extend(mine)

for n in range(20):
    trail.record(entry(n))
started = time.perf_counter()
workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
elapsed = time.perf_counter() - started
latencies.sort()
print(json.dumps({"records_s": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
                  "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000}))
services.close()
"""


def measure(source: Path, url: str, threads: int, records: int) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(source)}
    environment.pop("FHIR_BRIDGE_PSEUDONYM_KEY_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, url, str(threads), str(records), KEY],
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
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--records", type=int, default=200, help="records per thread")
    parser.add_argument("--source", type=Path, action="append", help="checkouts to compare (default: this one)")
    arguments = parser.parse_args()
    from benchmarks.dicom_ingest import postgres_schema

    sources = [s.resolve() for s in arguments.source or [Path(__file__).resolve().parent.parent]]
    print(f"{'source':28}{'database':12}{'threads':>8}{'records/s':>11}{'p50 ms':>9}{'p95 ms':>9}")
    for kind in arguments.databases.split(","):
        for threads in (int(t) for t in arguments.threads.split(",")):
            for source in sources:
                if kind == "sqlite":
                    with tempfile.TemporaryDirectory() as folder:
                        result = measure(source, f"sqlite:///{folder}/store.db", threads, arguments.records)
                else:
                    with postgres_schema(arguments.postgres_url) as url:
                        result = measure(source, url, threads, arguments.records)
                print(
                    f"{str(source)[-28:]:28}{kind:12}{threads:8}{result['records_s']:11.0f}"
                    f"{result['p50_ms']:9.2f}{result['p95_ms']:9.2f}"
                )


if __name__ == "__main__":
    main()
