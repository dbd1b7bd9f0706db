"""DICOM ingest benchmark: header parsing alone vs the CLI into SQLite and PostgreSQL vs STOW-RS over HTTP.

One run, the same files for every path: ``--studies`` x ``--series`` x ``--instances`` Part-10 files
made by rewriting the UIDs and patients of pydicom's bundled test files (CT, MR, NM, and a 320 KB MR
so the set is ~150 MB at the default size). Every figure is printed with its ratio to the baseline,
pydicom reading each header (``stop_before_pixels``) in one process, measured again right before
each row so that a machine whose load drifts during the run compares like with like. The issue's
target is an ingest rate of at least half that baseline.

- ``cli``: ``fhir-bridge ingest <folder>`` in a subprocess (its own summary gives the ingest time;
  the process's wall time, start-up included, is printed too);
- ``stow``: ``fhir-bridge serve`` in a subprocess and one client: one STOW-RS request per study,
  then, into a fresh database, the whole set as ONE chunked request (every instance a part), whose
  answer must list every part; the server's peak memory is read from /proc.

``python -m benchmarks.dicom_ingest --help`` lists the options.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import httpx
import orjson
import pydicom
from sqlalchemy import create_engine, text

from fhir_bridge.dicom.reader import read_path
from tests.dicom_samples import study_set, write_tree

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BASES = ("CT_small.dcm", "MR_small.dcm", "JPEG-lossy.dcm", "examples_overlay.dcm", "MR_small_implicit.dcm")
KEY = "benchmark-site-secret-0123456789abcdef"
BOUNDARY = "benchmark-boundary"
TARGET = 0.5


@dataclass
class Row:
    key: str
    label: str
    seconds: float
    instances: int
    note: str = ""
    baseline_rate: float = 0.0  # (a) measured again just before this row: shared machines drift

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate if self.baseline_rate else 0.0

    @property
    def rate(self) -> float:
        return self.instances / self.seconds if self.seconds else 0.0


def _environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")}
    environment["FHIR_BRIDGE_PSEUDONYM_KEY"] = KEY
    environment["FHIR_BRIDGE_AUTH"] = "none"  # the data path is measured; benchmarks.access measures access control
    return environment


def _executable() -> str:
    return str(Path(sys.executable).parent / "fhir-bridge")


def header_parse(files: list[Path]) -> Row:
    started = time.perf_counter()
    for path in files:
        pydicom.dcmread(path, stop_before_pixels=True)
    return Row("header_parse", "(a) header parse: pydicom, 1 process", time.perf_counter() - started, len(files))


def bridge_reader(files: list[Path]) -> Row:
    """fhir-bridge's own header reading alone (what the ingest paths spend on pydicom), for comparison."""
    started = time.perf_counter()
    for path in files:
        read_path(path)
    seconds = time.perf_counter() - started
    note = "specific tags, completeness check, attribute extraction"
    return Row("bridge_reader", "    fhir-bridge's reader alone, 1 process", seconds, len(files), note)


@contextmanager
def postgres_schema(server: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def database(kind: str, scratch: Path, postgres_url: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{scratch / f'{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_schema(postgres_url) as url:
            yield url


def cli_ingest(url: str, folder: Path, kind: str, count: int, workers: int) -> Row:
    command = [_executable(), "ingest", str(folder), "--database-url", url, "--no-progress", "--workers", str(workers)]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=_environment(), check=False)
    wall = time.perf_counter() - started
    match = re.search(r"ingested (\d+) instances .* in ([\d.]+) s", finished.stdout)
    if finished.returncode != 0 or not match or int(match.group(1)) != count:
        raise SystemExit(f"fhir-bridge ingest failed:\n{finished.stdout}\n{finished.stderr[-3000:]}")
    return Row(
        f"cli_{kind}",
        f"(b) CLI ingest -> {kind}" if kind == "sqlite" else f"(c) CLI ingest -> {kind}",
        float(match.group(2)),
        count,
        f"process wall time {wall:.1f} s (start-up included); {workers} reading workers",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(url: str, scratch: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    command = [_executable(), "serve", "--port", str(port), "--database-url", url]
    log = scratch / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=scratch, env=_environment(), stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(base):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/fhir/metadata", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, from /proc (NaN where there is none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _body(files: list[Path]) -> Iterator[bytes]:
    """A multipart/related body streamed from the files, without ever holding it whole."""
    for path in files:
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield path.read_bytes()
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def _stow(client: httpx.Client, base: str, files: list[Path]) -> None:
    response = client.post(
        f"{base}/dicomweb/studies",
        content=_body(files),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    stored = orjson.loads(response.content).get("00081199", {}).get("Value", [])
    if response.status_code != 200 or len(stored) != len(files):
        raise SystemExit(f"STOW-RS answered {response.status_code} with {len(stored)} of {len(files)} stored")


def stow_ingest(url: str, studies: dict[str, list[Path]], kind: str, scratch: Path, one_request: bool) -> Row:
    """STOW-RS into a fresh database: one request per study, or every instance in one request."""
    files = [path for group in studies.values() for path in group]
    requests = [files] if one_request else list(studies.values())
    with server(url, scratch) as (base, pid), httpx.Client(timeout=600) as client:
        _stow(client, base, files[:1])  # warm-up (first-use imports), then a fresh measure
        ready = _memory_mb(pid, "VmRSS")
        started = time.perf_counter()
        for group in requests:
            _stow(client, base, group)
        seconds = time.perf_counter() - started
        peak = _memory_mb(pid, "VmHWM")
    if one_request:
        size = sum(path.stat().st_size for path in files) / 1e6
        label, note = f"    same, all in one {size:.0f} MB request", f"{len(files)} parts, chunked"
    else:
        label, note = f"(d) STOW-RS over HTTP -> {kind}", f"one request per study, {len(requests)} requests"
    return Row(
        f"stow_{'one_request_' if one_request else ''}{kind}",
        label,
        seconds,
        len(files),
        f"{note}; server RSS {ready:.0f} MB when ready, peak {peak:.0f} MB",
    )


def print_rows(rows: list[Row]) -> None:
    """The table: each row's rate and its ratio to the baseline measured right before it."""
    print(f"{'path':44} {'seconds':>8} {'inst/s':>8} {'(a) inst/s':>10} {'vs (a)':>7}  note")
    for row in rows:
        print(
            f"{row.label:44} {row.seconds:8.2f} {row.rate:8.0f} {row.baseline_rate:10.0f} {row.ratio:7.2f}  {row.note}"
        )
    print("(a) is measured again right before each row; the ratio is against that measure")


def _with_database(kind: str, scratch: Path, postgres_url: str, run: Callable[[str], Row]) -> Row:
    with database(kind, scratch, postgres_url) as url:
        return run(url)


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="python -m benchmarks.dicom_ingest", description=__doc__.split("\n")[0])
    options.add_argument("--studies", type=int, default=20)
    options.add_argument("--series", type=int, default=5, help="series per study")
    options.add_argument("--instances", type=int, default=20, help="instances per series")
    options.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    options.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    options.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the CLI's header-reading processes")
    options.add_argument("--json", action="store_true", help="also print the figures as one line of JSON, last")
    arguments = options.parse_args(argv)
    kinds = [k.strip() for k in arguments.databases.split(",") if k.strip()]
    with tempfile.TemporaryDirectory(prefix="dicom-bench-") as scratch_name:
        scratch = Path(scratch_name)
        print("making the test files ...", file=sys.stderr, flush=True)
        files = write_tree(
            scratch / "files", study_set(arguments.studies, arguments.series, arguments.instances, BASES)
        )
        studies: dict[str, list[Path]] = {}
        for path in files:
            studies.setdefault(path.parent.parent.name, []).append(path)
        size = sum(path.stat().st_size for path in files) / 1e6
        rows = [header_parse(files)]
        measure: list[Callable[[], Row]] = [partial(bridge_reader, files)]
        for kind in kinds:
            fresh = partial(_with_database, kind, scratch, arguments.postgres_url)
            measure.append(
                partial(
                    fresh,
                    partial(
                        cli_ingest, folder=scratch / "files", kind=kind, count=len(files), workers=arguments.workers
                    ),
                )
            )
            for one_request in (False, True):
                measure.append(
                    partial(
                        fresh,
                        partial(stow_ingest, studies=studies, kind=kind, scratch=scratch, one_request=one_request),
                    )
                )
        rows[0].baseline_rate = rows[0].rate
        for run in measure:
            baseline = header_parse(files).rate
            row = run()
            row.baseline_rate = baseline
            rows.append(row)
    print(
        f"\nDICOM ingest: {len(files)} instances ({arguments.studies} studies x {arguments.series} series x "
        f"{arguments.instances}), {size:.0f} MB, {os.cpu_count()} cores"
    )
    print_rows(rows)
    ingest_rows = rows[2:]
    worst = min((row.ratio for row in ingest_rows), default=0.0)
    verdict = "met" if worst >= TARGET else "NOT met"
    print(f"\ntarget: every ingest path >= {TARGET:.1f} x the header-parse rate: {verdict} (lowest {worst:.2f})")
    if arguments.json:
        figures = [{**asdict(row), "rate": row.rate, "ratio": row.ratio} for row in rows]
        print(orjson.dumps({"instances": len(files), "megabytes": size, "rows": figures}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
