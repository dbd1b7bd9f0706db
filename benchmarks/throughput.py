"""Throughput under concurrency: wrk at 1 and 16 connections against fhir-bridge and its baselines.

In one run, on the same machine, each server in a process of its own on a loopback port:

- **floor**: a bare FastAPI app answering a Patient read with the same stored JSON (no database);
- **fhirstarter**: fhirstarter (PyPI) serving the same Patients from a dict, in a virtual environment of
  its own (it pins an older FastAPI); ``inmemory``, a minimal in-memory FHIR app, where it cannot install;
- **fhir-bridge**: ``fhir-bridge serve`` on a SQLite (or PostgreSQL) store holding those Patients and
  one ImagingStudy each, access control off (every request still audited, as in production);
- **fhir-bridge, no audit**: the same app without its access-control middleware (no audit record),
  to show what the audit commit costs.

wrk (Debian's ``wrk``, a C load generator) requests ``Patient/{id}``, ``Patient?identifier=`` and
``ImagingStudy?patient=`` over the stored ids in turn; every answer must be 200 or the run fails.
Measurements are interleaved over ``--repeat`` rounds and each figure is the median. The table gives
requests/s and the ratios the issue's targets are stated in.

    python -m benchmarks.throughput                     # SQLite, 1 and 16 connections, 3 rounds
    python -m benchmarks.throughput --seconds 2 --repeat 1 --patients 50    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
BASELINES = Path(__file__).with_name("baseline_servers.py")
FHIRSTARTER_VENV = REPO / ".bench" / "fhirstarter-venv"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEY = "benchmark-site-secret-0123456789"
START_TIMEOUT_S = 90.0
KINDS = ("read", "identifier", "study")  # Patient/{id}, Patient?identifier=, ImagingStudy?patient=
KIND_LABELS = {
    "read": "Patient read",
    "identifier": "`Patient?identifier=`",
    "study": "`ImagingStudy?patient=`",
}


# data ----------------------------------------------------------------------------------------------
@dataclass
class Data:
    database_url: str
    patients: dict[str, str]  # id -> stored JSON as fhir-bridge returns it
    identifiers: list[str]  # system|value, one per Patient, in the order of ``patients``
    file: Path  # the JSON file the baseline servers load


def load_store(database_url: str, patients: int, folder: Path) -> Data:
    """``patients`` Patients and one ImagingStudy each, written through the app's own transaction route."""
    from fastapi.testclient import TestClient

    from benchmarks.store_api import BUNDLE_PATIENTS, FHIR_HEADERS, Synthesizer
    from fhir_bridge import Settings, create_app

    app = create_app(Settings(database_url=database_url, pseudonym_key=KEY, auth="none"))
    synthesizer = Synthesizer(seed=16)
    stored: dict[str, str] = {}
    identifiers = []
    with TestClient(app, base_url="http://testserver") as client:
        remaining = patients
        while remaining > 0:
            size = min(remaining, BUNDLE_PATIENTS)
            remaining -= size
            answer = client.post("/fhir", json=synthesizer.transaction(size), headers=FHIR_HEADERS)
            answer.raise_for_status()
            for entry in answer.json()["entry"]:
                location = entry["response"]["location"].split("/_history")[0]
                kind, id_ = location.split("/")[-2:]
                if kind == "Patient":
                    text = client.get(f"/fhir/Patient/{id_}").text
                    stored[id_] = text
                    first = json.loads(text)["identifier"][0]
                    identifiers.append(f"{first['system']}|{first['value']}")
    app.state.services.close()
    file = folder / "patients.json"
    file.write_text(json.dumps({"patients": stored}))
    return Data(database_url, stored, identifiers, file)


# servers -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    base: str  # URL prefix of the FHIR paths
    kinds: tuple[str, ...]
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def started(
    name: str, command: Sequence[str], base: str, probe: str, kinds: tuple[str, ...], folder: Path, env: dict[str, str]
) -> Iterator[Server]:
    log = folder / f"{name.replace(' ', '_').replace(',', '')}.log"
    with log.open("wb") as out:
        cwd = env.get("PYTHONPATH", REPO)  # `python -m` puts the working directory first on sys.path
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    server = Server(name, base, kinds, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}{probe}", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def bridge_environment(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_BRIDGE_")}
    env.update(FHIR_BRIDGE_DATABASE_URL=database_url, FHIR_BRIDGE_PSEUDONYM_KEY=KEY, FHIR_BRIDGE_AUTH="none")
    return env


def fhir_bridge_command() -> list[str]:
    return [sys.executable, "-m", "fhir_bridge", "serve"]


def fhirstarter_python(install: bool) -> str | None:
    """The Python of fhirstarter's own environment (made with pip on first use), or None if unavailable."""
    python = FHIRSTARTER_VENV / "bin" / "python"
    if python.exists():
        return str(python)
    if not install:
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", str(FHIRSTARTER_VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "fhirstarter", "uvicorn"], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as error:
        print(f"fhirstarter could not be installed ({error.stderr.decode()[-500:]}): using the in-memory app")
        shutil.rmtree(FHIRSTARTER_VENV, ignore_errors=True)
        return None
    return str(python)


def serve_unaudited(port: int) -> None:
    """fhir-bridge as ``serve`` runs it, without the access-control middleware (and so without audit)."""
    import uvicorn

    from fhir_bridge.api.access import AccessControl
    from fhir_bridge.api.app import create_app
    from fhir_bridge.cli.serve import settle_heap
    from fhir_bridge.services import Services
    from fhir_bridge.settings import Settings

    app = create_app(services=Services.from_settings(Settings()))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not AccessControl]
    settle_heap()  # as ``serve`` does
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# wrk -----------------------------------------------------------------------------------------------
def paths(data: Data, kind: str, base_path: str) -> list[str]:
    ids = list(data.patients)
    if kind == "read":
        return [f"{base_path}/Patient/{id_}" for id_ in ids]
    if kind == "identifier":
        return [f"{base_path}/Patient?identifier={quote(value, safe='')}" for value in data.identifiers]
    return [f"{base_path}/ImagingStudy?patient={quote('Patient/' + id_, safe='')}" for id_ in ids]


def wrk_script(folder: Path, name: str, requests: list[str]) -> Path:
    """A wrk Lua script that sends ``requests`` in turn (each wrk thread from its own offset)."""
    listed = ",\n".join(json.dumps(path) for path in requests)
    script = folder / f"{name}.lua"
    script.write_text(
        f"local paths = {{\n{listed}\n}}\n"
        "local i = 0\n"
        "setup = function(thread) thread:set('offset', math.random(#paths)) end\n"
        "init = function(args) i = tonumber(offset) or 0 end\n"
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
    )
    return script


@dataclass
class WrkResult:
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = float("nan")  # the server's CPU time (all its processes) per request


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and of its live children (uvicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(child) for child in children]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run_wrk(url: str, script: Path, connections: int, seconds: int, pid: int | None = None) -> WrkResult:
    """Requests/s (and latency percentiles) of wrk; with ``pid``, also the server's CPU per request."""
    before = cpu_seconds(pid) if pid else 0.0
    threads = min(connections, 2)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    finished = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    out = finished.stdout
    if finished.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"wrk failed: {' '.join(command)}\n{out}\n{finished.stderr}")
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests against {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu = (cpu_seconds(pid) - before) / requests * 1e6 if pid and requests else float("nan")
    return WrkResult(rate, _latency(out, "50%"), _latency(out, "99%"), cpu)


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if not match:
        return float("nan")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


# the run -------------------------------------------------------------------------------------------
@dataclass
class Figures:
    """Median requests/s by (server, kind, connections), with every round kept."""

    rounds: dict[tuple[str, str, int], list[WrkResult]] = field(default_factory=dict)

    def add(self, server: str, kind: str, connections: int, result: WrkResult) -> None:
        self.rounds.setdefault((server, kind, connections), []).append(result)

    def rate(self, server: str, kind: str, connections: int) -> float | None:
        found = self.rounds.get((server, kind, connections))
        return statistics.median(r.rate for r in found) if found else None

    def cpu(self, server: str, kind: str, connections: int) -> float | None:
        found = self.rounds.get((server, kind, connections))
        return statistics.median(r.cpu_us for r in found) if found else None

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "server": server,
                "kind": kind,
                "connections": connections,
                "rate": statistics.median(r.rate for r in found),
                "rates": [round(r.rate, 1) for r in found],
                "p50_ms": statistics.median(r.p50_ms for r in found),
                "p99_ms": statistics.median(r.p99_ms for r in found),
                "cpu_us": statistics.median(r.cpu_us for r in found),
            }
            for (server, kind, connections), found in self.rounds.items()
        ]


def measure(
    servers: list[Server], data: Data, connections: Sequence[int], seconds: int, repeat: int, folder: Path
) -> Figures:
    figures = Figures()
    scripts = {}
    for server in servers:
        base_path = "/" + server.base.split("/", 3)[3] if server.base.count("/") >= 3 else ""
        for kind in server.kinds:
            scripts[(server.name, kind)] = wrk_script(
                folder, f"{server.name}-{kind}".replace(" ", "_").replace(",", ""), paths(data, kind, base_path)
            )
    origin = {server.name: server.base.split("/")[2] for server in servers}
    for round_ in range(repeat):
        for server in servers:
            for kind in server.kinds:
                script = scripts[(server.name, kind)]
                run_wrk(f"http://{origin[server.name]}", script, max(connections), 1)  # warm-up
                for count in connections:
                    result = run_wrk(f"http://{origin[server.name]}", script, count, seconds, server.process.pid)
                    figures.add(server.name, kind, count, result)
                    print(
                        f"  round {round_ + 1}: {server.name:28} {kind:10} {count:3} conn "
                        f"{result.rate:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  CPU {result.cpu_us:6.0f} us/req",
                        flush=True,
                    )
    return figures


BRIDGE = "fhir-bridge"
UNAUDITED = "fhir-bridge, no audit"
BEFORE = "fhir-bridge, before"


def workers_name(count: int) -> str:
    return BRIDGE if count == 1 else f"fhir-bridge, {count} workers"


def workers_table(figures: Figures, workers: Sequence[int], high: int) -> list[str]:
    """Requests/s at ``high`` connections by number of worker processes, and the ratio to one."""
    lines = [f"| request ({high} connections) | " + " | ".join(f"{n} worker{'s' * (n > 1)}" for n in workers) + " |"]
    lines.append("|---|" + "---:|" * len(workers))
    for kind in KINDS:
        one = figures.rate(BRIDGE, kind, high)
        cells = []
        for count in workers:
            rate = figures.rate(workers_name(count), kind, high)
            cells.append("-" if rate is None or one is None else f"{rate:,.0f} ({rate / one:.2f}x)")
        lines.append(f"| {KIND_LABELS[kind]} | " + " | ".join(cells) + " |")
    return lines


def table(figures: Figures, baseline: str, low: int, high: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The issue's table (markdown lines) and the targets with PASS/MISS."""
    rows = [
        ("floor", "read", "floor, Patient read"),
        (baseline, "read", f"{baseline} (in-memory), Patient read"),
        (BEFORE, "read", "fhir-bridge before (`--before`), Patient read"),
        (BRIDGE, "read", "fhir-bridge, Patient read"),
        (UNAUDITED, "read", "fhir-bridge without audit, Patient read"),
        (baseline, "identifier", f"{baseline} (in-memory), identifier search"),
        (BEFORE, "identifier", "fhir-bridge before, `Patient?identifier=`"),
        (BRIDGE, "identifier", "fhir-bridge, `Patient?identifier=`"),
        (UNAUDITED, "identifier", "fhir-bridge without audit, `Patient?identifier=`"),
        (BEFORE, "study", "fhir-bridge before, `ImagingStudy?patient=`"),
        (BRIDGE, "study", "fhir-bridge, `ImagingStudy?patient=`"),
        (UNAUDITED, "study", "fhir-bridge without audit, `ImagingStudy?patient=`"),
    ]
    lines = [
        f"| request | {low} connection | {high} connections | {high}/{low} | server CPU µs/request ({low} / {high}) |",
        "|---|---:|---:|---:|---:|",
    ]
    for server, kind, label in rows:
        one, many = figures.rate(server, kind, low), figures.rate(server, kind, high)
        if one is None or many is None:
            continue
        cpu = f"{figures.cpu(server, kind, low) or 0:,.0f} / {figures.cpu(server, kind, high) or 0:,.0f}"
        lines.append(f"| {label} | {one:,.0f} | {many:,.0f} | {many / one:.2f} | {cpu} |")
    targets = []

    def target(name: str, value: float | None, reference: float | None, factor: float) -> None:
        if value is None or reference is None:
            return
        ratio = value / reference
        targets.append({"target": name, "ratio": ratio, "needed": factor, "pass": ratio >= factor})

    for server in (BRIDGE, UNAUDITED):
        tag = "" if server == BRIDGE else " (no audit)"
        read = figures.rate(server, "read", high)
        target(f"read{tag}, {high} conn >= 2x {baseline} read", read, figures.rate(baseline, "read", high), 2.0)
        target(f"read{tag}, {high} conn >= 0.4x floor", read, figures.rate("floor", "read", high), 0.4)
        for kind in ("identifier", "study"):
            target(
                f"{KIND_LABELS[kind]}{tag}, {high} conn >= 1x {baseline} identifier search",
                figures.rate(server, kind, high),
                figures.rate(baseline, "identifier", high),
                1.0,
            )
        for kind in KINDS:
            target(
                f"{KIND_LABELS[kind]}{tag}: {high} conn >= {low} conn",
                figures.rate(server, kind, high),
                figures.rate(server, kind, low),
                1.0,
            )
    return lines, targets


def versions() -> dict[str, str]:
    import importlib.metadata

    found = {"python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    for package in ("fhir-bridge", "fastapi", "starlette", "uvicorn", "SQLAlchemy", "orjson", "uvloop", "httptools"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "-"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).split("\n")[0].split(" [")[0]
    return found


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    connections = [int(c) for c in arguments.connections.split(",")]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="throughput-")))
        if arguments.database == "sqlite":
            database_url = f"sqlite:///{folder / 'store.db'}"
        else:
            from benchmarks.dicom_ingest import postgres_schema

            database_url = stack.enter_context(postgres_schema(arguments.postgres_url))
        print(f"loading {arguments.patients} Patients and as many ImagingStudies into {arguments.database} ...")
        data = load_store(database_url, arguments.patients, folder)
        wanted = arguments.baseline == "fhirstarter" and not arguments.bridge_only
        fhirstarter = fhirstarter_python(install=True) if wanted else None
        baseline = "fhirstarter" if fhirstarter else "inmemory"
        any_id = next(iter(data.patients))
        servers = []

        def start(name: str, command: list[str], base: str, kinds: tuple[str, ...], env: dict[str, str]) -> None:
            probe = f"/Patient/{any_id}"
            servers.append(stack.enter_context(started(name, command, base, probe, kinds, folder, env)))

        if arguments.bridge_only:
            baseline = "-"
        port = free_port()
        if not arguments.bridge_only:
            start("floor", [sys.executable, str(BASELINES), "floor", str(data.file), str(port)],
              f"http://127.0.0.1:{port}/fhir", ("read",), dict(os.environ))  # fmt: skip
        port = free_port()
        python = fhirstarter or sys.executable
        if not arguments.bridge_only:
            start(baseline, [python, str(BASELINES), baseline, str(data.file), str(port)],
              f"http://127.0.0.1:{port}" + ("" if fhirstarter else "/fhir"), ("read", "identifier"),
              dict(os.environ))  # fmt: skip
        environment = bridge_environment(database_url)
        port = free_port()
        start(BRIDGE, [*fhir_bridge_command(), "--port", str(port), *arguments.serve_args],
              f"http://127.0.0.1:{port}/fhir", KINDS, environment)  # fmt: skip
        for count in sorted({int(n) for n in arguments.workers.split(",")} - {1}):
            port = free_port()
            start(workers_name(count), [*fhir_bridge_command(), "--port", str(port), "--workers", str(count),
                  *arguments.serve_args], f"http://127.0.0.1:{port}/fhir", KINDS, environment)  # fmt: skip
        if arguments.before:  # another checkout of fhir-bridge (e.g. `git archive main`), on the same store
            port = free_port()
            before = {**environment, "PYTHONPATH": str(arguments.before.resolve())}
            start(BEFORE, [*fhir_bridge_command(), "--port", str(port)], f"http://127.0.0.1:{port}/fhir", KINDS,
                  before)  # fmt: skip
        if not arguments.no_unaudited:
            port = free_port()
            start(UNAUDITED, [sys.executable, "-m", "benchmarks.throughput", "--serve-unaudited", str(port)],
                  f"http://127.0.0.1:{port}/fhir", KINDS, environment)  # fmt: skip
        figures = measure(servers, data, connections, arguments.seconds, arguments.repeat, folder)
    low, high = min(connections), (16 if 16 in connections else max(connections))  # the 16
    lines, targets = table(figures, baseline, low, high)
    about = versions()
    print()
    print(
        f"== throughput on {arguments.database}: {arguments.patients} Patients, wrk {arguments.seconds} s per "
        f"figure, median of {arguments.repeat} round(s); load average at the end {os.getloadavg()[0]:.1f}"
    )
    print("   " + ", ".join(f"{k} {v}" for k, v in about.items()))
    print("\n".join(lines))
    workers = sorted({int(n) for n in arguments.workers.split(",")} | {1})
    scaling = workers_table(figures, workers, high) if len(workers) > 1 else []
    if scaling:
        print(f"\nWORKERS (fhir-bridge serve --workers N, {os.cpu_count()} cores)")
        print("\n".join(scaling))
    print("\nTARGETS (from the issue, same run)")
    for item in targets:
        verdict = "PASS" if item["pass"] else "MISS"
        print(f"  {verdict}  {item['target']}: {item['ratio']:.2f}x (needs {item['needed']:g}x)")
    results = {
        "database": arguments.database,
        "patients": arguments.patients,
        "seconds": arguments.seconds,
        "repeat": arguments.repeat,
        "baseline": baseline,
        "connections": connections,
        "versions": about,
        "load_average": os.getloadavg()[0],
        "figures": figures.as_json(),
        "targets": targets,
        "table": lines,
        "workers": workers,
        "workers_table": scaling,
    }
    if arguments.json:
        print(json.dumps(results))
    return results


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--patients", type=int, default=1000, help="Patients (and ImagingStudies) in the store")
    parser.add_argument("--connections", default="1,16", help="wrk connection counts, comma-separated")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration of each figure")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the median")
    parser.add_argument("--baseline", choices=("fhirstarter", "inmemory"), default="fhirstarter")
    parser.add_argument("--workers", default="1", help="also measure `serve --workers N` for these N (e.g. 1,2,4)")
    parser.add_argument("--before", type=Path, help="also serve fhir-bridge from this source tree (a comparison)")
    parser.add_argument("--bridge-only", action="store_true", help="measure fhir-bridge only (no floor, no baseline)")
    parser.add_argument("--no-unaudited", action="store_true", help="skip the no-audit variant of fhir-bridge")
    parser.add_argument("--serve-args", nargs="*", default=[], help="extra arguments to `fhir-bridge serve`")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON, as the last line")
    parser.add_argument("--serve-unaudited", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    arguments = parser().parse_args()
    if arguments.serve_unaudited:
        serve_unaudited(arguments.serve_unaudited)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    run(arguments)


if __name__ == "__main__":
    main()
