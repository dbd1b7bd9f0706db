"""Throughput of an audited, access-controlled Patient read under wrk, with 1 and 16 connections.

Every read with access control on verifies a bearer token and writes an audit record before it is
answered; with many connections the records of concurrent requests are written together (group
commit, ``audit.log.AuditLog``). This measures what that costs and how it scales: the real server
(``fhir-bridge serve``, one process) in a subprocess, a client registered with ``clients add``, a token
from the built-in endpoint, and wrk (Debian's ``wrk``, a C load generator) on one Patient URL.

    python -m benchmarks.audit_wrk                               # SQLite and PostgreSQL, 10 s per run
    python -m benchmarks.audit_wrk --databases sqlite --seconds 3
    python -m benchmarks.audit_wrk --source /tmp/other-checkout  # the same run against another tree

``--source`` runs the server (and ``clients add``) from another checkout of fhir-bridge, e.g. an
export of main (``git archive main | tar -x -C /tmp/main``), for a before/after comparison in one run.
It also prints the audit records written per run and, with a chain, the records per transaction.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from benchmarks.dicom_ingest import postgres_schema
from tests.conftest import free_port
from tests.security_helpers import ec_key

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEY = "benchmark-site-secret-0123456789"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@contextmanager
def database(kind: str, postgres_url: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'store.db'}"
        return
    with postgres_schema(postgres_url) as url:
        yield url


def _environment(source: Path, database_url: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(source),
        "FHIR_BRIDGE_DATABASE_URL": database_url,
        "FHIR_BRIDGE_PSEUDONYM_KEY": KEY,
        "FHIR_BRIDGE_AUTH": "smart",
    }
    environment.pop("FHIR_BRIDGE_PSEUDONYM_KEY_FILE", None)
    return environment


@contextmanager
def server(source: Path, database_url: str, folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The server of ``source`` on a free port, a client registered; yields the FHIR base and auth headers."""
    environment = _environment(source, database_url)
    key = ec_key("bench-1")
    jwks = folder / "bench.jwks"
    jwks.write_text(json.dumps(key.jwks()), encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_bridge",
            "clients",
            "add",
            "bench",
            "--scope",
            "system/*.cruds",
            "--jwks",
            str(jwks),
        ],
        env=environment,
        cwd=source,
        check=True,
        capture_output=True,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment["FHIR_BRIDGE_PUBLIC_BASE_URL"] = f"{base}/fhir"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port)],
        env=environment,
        cwd=source,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/fhir/metadata", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "server.log").read_text(errors="replace"))
            time.sleep(0.1)
        from tests.security_helpers import assertion

        answer = httpx.post(
            f"{base}/fhir/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion("bench", key, audience=f"{base}/fhir/auth/token"),
                "scope": "system/*.cruds",
            },
        )
        answer.raise_for_status()
        yield f"{base}/fhir", {"Authorization": f"Bearer {answer.json()['access_token']}"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> tuple[float, float, int]:
    """Requests/s, p50 latency (ms) and non-2xx answers of wrk on ``url``."""
    threads = min(connections, 2)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    assert p50 is not None, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, float(p50.group(1)) * scale, int(failed.group(1)) if failed else 0


def audit_rows(database_url: str) -> int:
    url = database_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        url = f"sqlite:///{path.with_name(f'{path.stem}.audit{path.suffix}')}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one())
    finally:
        engine.dispose()


def run(kind: str, source: Path, postgres_url: str, connections: list[int], seconds: float) -> list[dict]:
    results = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        database(kind, postgres_url, Path(scratch)) as url,
        server(source, url, Path(scratch)) as (fhir, headers),
    ):
        created = httpx.post(f"{fhir}/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=headers)
        created.raise_for_status()
        target = f"{fhir}/Patient/{created.json()['id']}"
        wrk(target, headers, 2, 1)  # warm-up
        for count in connections:
            before = audit_rows(url)
            rate, p50, failed = wrk(target, headers, count, seconds)
            written = audit_rows(url) - before
            results.append(
                {"database": kind, "connections": count, "req_s": rate, "p50_ms": p50, "failed": failed,
                 "audit_records": written}
            )  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    connections = [int(c) for c in arguments.connections.split(",")]
    results = []
    for kind in arguments.databases.split(","):
        results += run(kind.strip(), arguments.source.resolve(), arguments.postgres_url, connections, arguments.seconds)
    print(f"audited Patient read, access control on, source {arguments.source}")
    print(f"{'database':12}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'non-2xx':>9}{'records':>9}")
    for row in results:
        print(
            f"{row['database']:12}{row['connections']:6}{row['req_s']:10.0f}{row['p50_ms']:9.2f}"
            f"{row['failed']:9}{row['audit_records']:9}"
        )
    if arguments.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
