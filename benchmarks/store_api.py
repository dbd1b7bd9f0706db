"""Store and REST API benchmark: ingest, read and search over real HTTP, on SQLite and PostgreSQL.

For each database the real app runs under uvicorn in a subprocess on a loopback port and one
keep-alive ``httpx.Client`` drives it, one request at a time. Every figure is printed next to a
baseline measured in the same run (machines are noisy):

- ingest rates against the raw insert rate of the same JSON rows into a scratch table of the same
  database (no index, no validation, no HTTP);
- latencies against the HTTP floor: a route of a tiny FastAPI app, mounted in the same server,
  that returns a fixed JSON body the size of a Patient without touching the database.

``python -m benchmarks.store_api --help`` lists the options; README.md explains the output.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import importlib.util
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:
    from fastapi import FastAPI

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASES = ("sqlite", "postgresql")
FLOOR_PREFIX = "/_floor"
BUNDLE_PATIENTS = 50  # a transaction Bundle: 50 Patients + 50 ImagingStudies = 100 entries
WARMUP_REQUESTS = 50
TRANSACTION_TARGET = 2000.0  # resources/s into SQLite (the target)
READ_TARGET = 1000.0  # Patient reads/s from a single client (the target)

FHIR_HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MRN_SYSTEM = "urn:oid:1.2.826.0.1.3680043.10.9999.1"  # made-up hospital OIDs and UID root
ACCESSION_SYSTEM = "urn:oid:1.2.826.0.1.3680043.10.9999.2"
UID_ROOT = "1.2.826.0.1.3680043.10.9999"
FAMILIES = (
    "Smith", "Jones", "Williams", "Brown", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Martin", "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Simon", "Michel", "Garcia",
    "De Jong", "Jansen", "De Vries", "Van den Berg", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos",
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
    "Nowak", "Kowalski", "Wiśniewski", "Novák", "Svoboda", "Horváth", "Nagy", "Andersson", "Johansson", "Nielsen",
)  # fmt: skip
GIVEN = {
    "female": ("Anna", "Maria", "Emma", "Sophie", "Julia", "Laura", "Clara", "Ingrid", "Eva", "Léa", "Giulia", "Zofia"),
    "male": ("Jan", "Peter", "Thomas", "Lukas", "Paul", "Marco", "Luca", "Henrik", "Jonas", "Noé", "Piotr", "David"),
}
STUDIES = {  # modality: (study description, SOP Class UID, body sites as SNOMED (code, display))
    "CT": (
        "CT",
        "1.2.840.10008.5.1.4.1.1.2",
        (("51185008", "Thoracic structure"), ("818983003", "Abdomen"), ("69536005", "Head structure")),
    ),
    "MR": (
        "MR",
        "1.2.840.10008.5.1.4.1.1.4",
        (
            ("12738006", "Brain structure"),
            ("72696002", "Knee region structure"),
            ("421060004", "Structure of vertebral column"),
        ),
    ),
}


class BenchmarkError(RuntimeError):
    """The server answered something the benchmark did not expect."""


# synthetic data ------------------------------------------------------------------------------
class Synthesizer:
    """Realistic but made-up Patients and ImagingStudies, reproducible from a seed."""

    def __init__(self, seed: int, prefix: str = "") -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self.prefix = prefix  # keeps identifiers of different synthesizers apart

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def uid(self) -> str:
        return f"{UID_ROOT}.{self.rng.randrange(10**9)}.{self._next()}"

    def urn_uuid(self) -> str:
        return f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"

    def patient(self) -> dict[str, Any]:
        rng = self.rng
        gender = rng.choice(("female", "male"))
        given = rng.sample(GIVEN[gender], rng.choice((1, 1, 2)))
        return {
            "resourceType": "Patient",
            "identifier": [
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                    "system": MRN_SYSTEM,
                    "value": f"{self.prefix}MRN{self._next():08d}",
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": rng.choice(FAMILIES), "given": given}],
            "gender": gender,
            "birthDate": f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }

    def study(self, subject: str) -> dict[str, Any]:
        rng = self.rng
        modality = rng.choice(("CT", "MR"))
        description, sop_class, sites = STUDIES[modality]
        code, display = rng.choice(sites)
        instances = rng.randint(2, 3)
        started = (
            f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            f"T{rng.randint(8, 17):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}+0{rng.randint(1, 2)}:00"
        )
        return {
            "resourceType": "ImagingStudy",
            "identifier": [
                {"system": "urn:dicom:uid", "value": f"urn:oid:{self.uid()}"},
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                    "system": ACCESSION_SYSTEM,
                    "value": f"{self.prefix}ACC{self._next():09d}",
                },
            ],
            "status": "available",
            "modality": [{"system": DCM, "code": modality}],
            "subject": {"reference": subject},
            "started": started,
            "numberOfSeries": 1,
            "numberOfInstances": instances,
            "description": f"{description} {display.lower()}",
            "series": [
                {
                    "uid": self.uid(),
                    "number": 1,
                    "modality": {"system": DCM, "code": modality},
                    "description": display,
                    "numberOfInstances": instances,
                    "bodySite": {"system": SNOMED, "code": code, "display": display},
                    "instance": [
                        {
                            "uid": self.uid(),
                            "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{sop_class}"},
                            "number": n,
                        }
                        for n in range(1, instances + 1)
                    ],
                }
            ],
        }

    def transaction(self, patients: int) -> dict[str, Any]:
        """A transaction Bundle: each Patient followed by an ImagingStudy naming its urn:uuid fullUrl."""
        entries = []
        for _ in range(patients):
            full_url = self.urn_uuid()
            entries.append(
                {"fullUrl": full_url, "resource": self.patient(), "request": {"method": "POST", "url": "Patient"}}
            )
            entries.append(
                {
                    "fullUrl": self.urn_uuid(),
                    "resource": self.study(full_url),
                    "request": {"method": "POST", "url": "ImagingStudy"},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def stored_form(resource: dict[str, Any]) -> tuple[str, str, str]:
    """(type, id, JSON) of ``resource`` as the store keeps it: with an id and version meta."""
    res_id = str(uuid.uuid4())
    content = {**resource, "id": res_id, "meta": {"versionId": "1", "lastUpdated": "2024-05-04T10:22:13.123456Z"}}
    return resource["resourceType"], res_id, orjson.dumps(content).decode()


@dataclass
class PatientRecord:
    """What the benchmark knows about a created Patient, to build searches and check answers."""

    id: str
    mrn: str
    family: str
    has_study: bool


@dataclass
class Workload:
    """Everything one database run sends, serialised before any clock starts."""

    singles: list[dict[str, Any]]
    bundles: list[dict[str, Any]]
    single_bodies: list[bytes] = field(init=False)
    bundle_bodies: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.single_bodies = [orjson.dumps(p) for p in self.singles]
        self.bundle_bodies = [orjson.dumps(b) for b in self.bundles]

    @property
    def bundle_resources(self) -> int:
        return sum(len(b["entry"]) for b in self.bundles)


def make_workload(patients: int, seed: int) -> Workload:
    """N/4 Patients to create one by one, the other 3N/4 in transactions with one ImagingStudy each."""
    synth = Synthesizer(seed)
    singles = [synth.patient() for _ in range(patients // 4)]
    remaining = patients - len(singles)
    bundles = []
    while remaining > 0:
        size = min(BUNDLE_PATIENTS, remaining)
        bundles.append(synth.transaction(size))
        remaining -= size
    return Workload(singles, bundles)


# the server under test (subprocess) --------------------------------------------------------------
def floor_body() -> bytes:
    """A Patient-sized JSON body, as the store would return it, for the HTTP floor route."""
    _, _, content = stored_form(Synthesizer(0).patient())
    return content.encode()


def floor_app(body: bytes) -> FastAPI:
    """A tiny FastAPI app whose one route answers ``body`` with no database work.

    The route is a plain ``def`` like the FHIR read route, so both run in the same thread pool.
    """
    from fastapi import FastAPI, Response

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    headers = {"ETag": 'W/"1"', "Last-Modified": "Sat, 04 May 2024 10:22:13 GMT"}

    @app.get("/Patient/{resource_id}", response_model=None)
    def floor(resource_id: str) -> Response:
        return Response(body, media_type="application/fhir+json;charset=utf-8", headers=headers)

    return app


def serve(port: int) -> None:
    """Run the app as ``fhir-bridge serve`` does (settings from FHIR_BRIDGE_*), plus the floor route."""
    import uvicorn

    from fhir_bridge import Settings, create_app

    # the benchmark's data is synthetic: a throw-away pseudonymisation key, unless one is configured
    key = os.environ.get("FHIR_BRIDGE_PSEUDONYM_KEY") or uuid.uuid4().hex
    settings = Settings(port=port, pseudonym_key=key, auth="none")  # benchmarks.access measures access control
    app = create_app(settings)
    app.mount(FLOOR_PREFIX, floor_app(floor_body()))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=settings.access_log, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    base: str  # http://127.0.0.1:port
    pid: int


@contextmanager
def running_server(database_url: str, log_path: Path, timeout: float = 60.0) -> Iterator[RunningServer]:
    """The app in a uvicorn subprocess on a free loopback port, stopped on exit."""
    port = free_port()
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "FHIR_BRIDGE_DATABASE_URL": database_url, "PYTHONPATH": python_path}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.store_api", "--serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise BenchmarkError(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{base}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the server did not answer within {timeout:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield RunningServer(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# databases ------------------------------------------------------------------------------------
@contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped on exit (as tests/conftest.py does)."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            separator = "&" if "?" in server_url else "?"
            yield f"{server_url}{separator}options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()


def raw_engine(database: str, database_url: str, directory: Path) -> Engine:
    """An engine for the raw insert baseline: a scratch SQLite file set up like the store's, or the same schema."""
    if database == "postgresql":
        return create_engine(database_url)
    engine = create_engine(f"sqlite:///{directory / 'raw-baseline.db'}")

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def raw_insert_rate(engine: Engine, rows: Sequence[tuple[str, str, str]], per_commit: int) -> float:
    """Rows/s of plain ``executemany`` INSERTs of ``rows`` into a scratch table, ``per_commit`` rows a transaction."""
    key = "INTEGER PRIMARY KEY" if engine.dialect.name == "sqlite" else "BIGSERIAL PRIMARY KEY"
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bench_raw_insert"))
        connection.execute(
            text(
                f"CREATE TABLE bench_raw_insert (pk {key}, res_type VARCHAR(64) NOT NULL,"
                " res_id VARCHAR(64) NOT NULL, content TEXT NOT NULL)"
            )
        )
    statement = text("INSERT INTO bench_raw_insert (res_type, res_id, content) VALUES (:t, :i, :c)")
    parameters = [{"t": t, "i": i, "c": c} for t, i, c in rows]
    started = time.perf_counter()
    for start in range(0, len(parameters), per_commit):
        with engine.begin() as connection:
            connection.execute(statement, parameters[start : start + per_commit])
    elapsed = time.perf_counter() - started
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE bench_raw_insert"))
    return len(rows) / elapsed


# measurements ------------------------------------------------------------------------------------
@dataclass
class Ingest:
    """One ingest measurement and its raw-insert baseline."""

    key: str
    label: str
    resources: int
    seconds: float
    baseline_label: str
    baseline_rate: float
    target: float | None = None

    @property
    def rate(self) -> float:
        return self.resources / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.baseline_rate

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.rate >= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "resources": self.resources,
            "seconds": round(self.seconds, 4),
            "resources_per_s": round(self.rate, 1),
            "baseline": {"label": self.baseline_label, "rows_per_s": round(self.baseline_rate, 1)},
            "ratio_to_baseline": round(self.ratio, 4),
            "target_resources_per_s": self.target,
            "passed": self.passed,
        }


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, min(len(sorted_values), int(fraction * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


@dataclass
class Latency:
    """Sequential requests of one kind: per-request milliseconds and the wall time of the loop."""

    key: str
    label: str
    milliseconds: list[float]
    seconds: float
    target_rps: float | None = None
    floor: Latency | None = None

    @property
    def p50(self) -> float:
        return percentile(sorted(self.milliseconds), 0.50)

    @property
    def p95(self) -> float:
        return percentile(sorted(self.milliseconds), 0.95)

    @property
    def rps(self) -> float:
        return len(self.milliseconds) / self.seconds

    @property
    def ratio_p50(self) -> float:
        return self.p50 / self.floor.p50 if self.floor else 1.0

    @property
    def ratio_p95(self) -> float:
        return self.p95 / self.floor.p95 if self.floor else 1.0

    @property
    def passed(self) -> bool | None:
        return None if self.target_rps is None else self.rps >= self.target_rps

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "requests": len(self.milliseconds),
            "p50_ms": round(self.p50, 3),
            "p95_ms": round(self.p95, 3),
            "requests_per_s": round(self.rps, 1),
            "p50_to_floor": round(self.ratio_p50, 3),
            "p95_to_floor": round(self.ratio_p95, 3),
            "target_requests_per_s": self.target_rps,
            "passed": self.passed,
        }


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise BenchmarkError(f"{what}: expected {status}, got {response.status_code}: {response.text[:500]}")


def timed_requests(
    client: httpx.Client,
    urls: Sequence[str],
    check: Callable[[httpx.Response, int], None],
    key: str,
    label: str,
) -> Latency:
    """GET each url in turn; ``check(response, index)`` runs outside the per-request timing."""
    for url in urls[:WARMUP_REQUESTS]:
        client.get(url)
    latencies = []
    started = time.perf_counter()
    for index, url in enumerate(urls):
        before = time.perf_counter()
        response = client.get(url)
        latencies.append((time.perf_counter() - before) * 1000)
        check(response, index)
    return Latency(key, label, latencies, time.perf_counter() - started)


def timed_stdlib_requests(base: str, urls: Sequence[str], key: str, label: str) -> Latency:
    """Like ``timed_requests`` with the standard library's keep-alive ``http.client``: shows the client's share."""
    address = httpx.URL(base)
    connection = http.client.HTTPConnection(address.host, address.port, timeout=120)
    headers = {"accept": FHIR_HEADERS["accept"]}

    def get(url: str) -> int:
        connection.request("GET", url, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    try:
        for url in urls[:WARMUP_REQUESTS]:
            get(url)
        latencies = []
        started = time.perf_counter()
        for url in urls:
            before = time.perf_counter()
            status = get(url)
            latencies.append((time.perf_counter() - before) * 1000)
            if status != 200:
                raise BenchmarkError(f"GET {url}: expected 200, got {status}")
        return Latency(key, label, latencies, time.perf_counter() - started)
    finally:
        connection.close()


def analyze(engine: Engine) -> None:
    """ANALYZE the database (planner statistics), for ``--analyze``."""
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))


def postgres_facts(engine: Engine) -> str:
    """The PostgreSQL version and whether autovacuum (hence auto-ANALYZE) runs: search plans depend on it."""
    with engine.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar_one()
        autovacuum = connection.execute(text("SHOW autovacuum")).scalar_one()
    return f"PostgreSQL {version.split()[0]}, autovacuum {autovacuum}"


def _location_id(location: str) -> str:
    """The id in ``.../Type/id/_history/n`` (a Location header or a transaction entry's location)."""
    parts = location.split("/")
    return parts[parts.index("_history") - 1]


@dataclass
class DatabaseResult:
    name: str
    where: str
    server_pid: int
    ingest: list[Ingest]
    latency: list[Latency]

    def as_json(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "ingest": [i.as_json() for i in self.ingest],
            "latency": [x.as_json() for x in self.latency],
        }


def run_database(database: str, database_url: str, directory: Path, options: argparse.Namespace) -> DatabaseResult:
    """Start the server on ``database_url`` and measure ingest, reads and searches."""
    from fhir_bridge.search.values import normalize_string

    workload = make_workload(options.patients, options.seed)
    rng = random.Random(options.seed + 1)
    engine = raw_engine(database, database_url, directory)
    store_engine = create_engine(database_url) if database == "postgresql" or options.analyze else None
    where = database_url
    if database == "postgresql" and store_engine is not None:
        where = f"{database_url.split('@')[-1]} ({postgres_facts(store_engine)})"
    try:
        with (
            running_server(database_url, directory / f"server-{database}.log") as server,
            httpx.Client(base_url=server.base, headers=FHIR_HEADERS, timeout=120) as client,
        ):
            fhir = "/fhir"
            patients: list[PatientRecord] = []

            # warm-up: one create and one small transaction load the validation models and indexers
            warm = Synthesizer(options.seed + 2, prefix="WARM-")
            for _ in range(3):
                _expect(client.post(f"{fhir}/Patient", content=orjson.dumps(warm.patient())), 201, "warm-up create")
            _expect(client.post(fhir, content=orjson.dumps(warm.transaction(2))), 200, "warm-up transaction")
            warm_patients = 5

            # 1. single creates
            baseline = raw_insert_rate(engine, [stored_form(p) for p in workload.singles], per_commit=1)
            started = time.perf_counter()
            locations = []
            for body in workload.single_bodies:
                response = client.post(f"{fhir}/Patient", content=body)
                _expect(response, 201, "create Patient")
                locations.append(response.headers["location"])
            single = Ingest(
                "single_create",
                f"single creates: {len(locations)} x POST Patient",
                len(locations),
                time.perf_counter() - started,
                "raw INSERT, 1 row/commit",
                baseline,
            )
            for location, resource in zip(locations, workload.singles, strict=True):
                patients.append(
                    PatientRecord(
                        _location_id(location), resource["identifier"][0]["value"], resource["name"][0]["family"], False
                    )
                )

            # 2. transaction Bundles
            rows = [stored_form(e["resource"]) for b in workload.bundles for e in b["entry"]]
            baseline = raw_insert_rate(engine, rows, per_commit=BUNDLE_PATIENTS * 2)
            started = time.perf_counter()
            responses = []
            for body in workload.bundle_bodies:
                response = client.post(fhir, content=body)
                _expect(response, 200, "transaction Bundle")
                responses.append(response)
            elapsed = time.perf_counter() - started
            for bundle, response in zip(workload.bundles, responses, strict=True):
                answers = response.json()["entry"]
                for entry, answer in zip(bundle["entry"], answers, strict=True):
                    if not answer["response"]["status"].startswith("201"):
                        raise BenchmarkError(f"transaction entry answered {answer['response']}")
                    resource = entry["resource"]
                    if resource["resourceType"] == "Patient":
                        patients.append(
                            PatientRecord(
                                _location_id(answer["response"]["location"]),
                                resource["identifier"][0]["value"],
                                resource["name"][0]["family"],
                                True,
                            )
                        )
            sizes = sorted({len(b["entry"]) for b in workload.bundles})
            transactions = Ingest(
                "transaction",
                f"transactions: {len(workload.bundles)} x Bundle({'/'.join(map(str, sizes))})",
                workload.bundle_resources,
                elapsed,
                f"raw executemany, {BUNDLE_PATIENTS * 2} rows/commit",
                baseline,
                TRANSACTION_TARGET if database == "sqlite" else None,
            )

            if options.analyze and store_engine is not None:
                analyze(store_engine)
                where += "; ANALYZE run after ingest"

            # 3. the HTTP floor, then reads
            picks = [rng.choice(patients) for _ in range(options.reads)]

            def check_plain(response: httpx.Response, index: int) -> None:
                _expect(response, 200, "GET")

            floor = timed_requests(
                client,
                [f"{FLOOR_PREFIX}/Patient/{p.id}" for p in picks],
                check_plain,
                "http_floor",
                f"HTTP floor: GET {FLOOR_PREFIX}/Patient/{{id}}",
            )
            read = timed_requests(
                client, [f"{fhir}/Patient/{p.id}" for p in picks], check_plain, "read", "read: GET Patient/{id}"
            )
            read.target_rps, read.floor = READ_TARGET, floor
            stdlib_floor = timed_stdlib_requests(
                server.base,
                [f"{FLOOR_PREFIX}/Patient/{p.id}" for p in picks],
                "http_floor_stdlib",
                "HTTP floor, stdlib http.client (info)",
            )
            stdlib_read = timed_stdlib_requests(
                server.base, [f"{fhir}/Patient/{p.id}" for p in picks], "read_stdlib", "read, stdlib http.client (info)"
            )
            stdlib_read.floor = stdlib_floor

            # 4. searches
            total_patients = len(patients) + warm_patients
            searches = _searches(client, fhir, patients, rng, options.searches, total_patients, normalize_string)
            for latency in searches:
                latency.floor = floor
    finally:
        engine.dispose()
        if store_engine is not None:
            store_engine.dispose()
    latency = [floor, read, stdlib_floor, stdlib_read, *searches]
    return DatabaseResult(database, where, server.pid, [single, transactions], latency)


def _entries(response: httpx.Response, what: str) -> list[dict[str, Any]]:
    _expect(response, 200, what)
    bundle = response.json()
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def _searches(
    client: httpx.Client,
    fhir: str,
    patients: list[PatientRecord],
    rng: random.Random,
    repeats: int,
    total_patients: int,
    normalize: Callable[[str], str],
) -> list[Latency]:
    """The search latencies; every answer is checked against what was created."""
    results = []
    with_study = [p for p in patients if p.has_study]

    picked = [rng.choice(patients) for _ in range(repeats)]

    def check_identifier(response: httpx.Response, index: int) -> None:
        found = _entries(response, "search by identifier")
        if [r["id"] for r in found] != [picked[index].id]:
            raise BenchmarkError(f"identifier search for {picked[index].mrn} found {[r['id'] for r in found]}")

    urls = [f"{fhir}/Patient?{urlencode({'identifier': f'{MRN_SYSTEM}|{p.mrn}'})}" for p in picked]
    results.append(
        timed_requests(client, urls, check_identifier, "search_identifier", "search: Patient?identifier=system|value")
    )

    subjects = [rng.choice(with_study) for _ in range(repeats)]

    def check_subject(response: httpx.Response, index: int) -> None:
        found = _entries(response, "search by patient")
        if len(found) != 1 or found[0]["subject"]["reference"] != f"Patient/{subjects[index].id}":
            raise BenchmarkError(f"ImagingStudy?patient=Patient/{subjects[index].id} found {len(found)} studies")

    urls = [f"{fhir}/ImagingStudy?patient=Patient/{p.id}" for p in subjects]
    results.append(
        timed_requests(client, urls, check_subject, "search_patient", "search: ImagingStudy?patient=Patient/id")
    )

    def check_modality(response: httpx.Response, index: int) -> None:
        found = _entries(response, "search by modality and date")
        if not found:
            raise BenchmarkError("ImagingStudy?modality=CT&started=ge2020-01-01 found nothing")
        for study in found:
            if study["modality"][0]["code"] != "CT" or study["started"][:10] < "2020-01-01":
                raise BenchmarkError(
                    f"ImagingStudy?modality=CT&started=ge2020-01-01 found {study['modality']} {study['started']}"
                )

    urls = [f"{fhir}/ImagingStudy?modality=CT&started=ge2020-01-01"] * repeats
    results.append(
        timed_requests(
            client, urls, check_modality, "search_modality_started", "search: ImagingStudy?modality=CT&started=ge2020"
        )
    )

    prefixes = [rng.choice(patients).family[:3] for _ in range(repeats)]

    def check_family(response: httpx.Response, index: int) -> None:
        found = _entries(response, "search by family")
        wanted = normalize(prefixes[index])
        if not found or not all(
            any(normalize(n.get("family", "")).startswith(wanted) for n in r["name"]) for r in found
        ):
            raise BenchmarkError(f"Patient?family={prefixes[index]} found {len(found)} unexpected Patients")

    urls = [f"{fhir}/Patient?family={quote(p)}&_count=50" for p in prefixes]
    results.append(
        timed_requests(client, urls, check_family, "search_family_prefix", "search: Patient?family=prefix&_count=50")
    )

    def check_total(response: httpx.Response, index: int) -> None:
        _expect(response, 200, "search with _total")
        if response.json().get("total") != total_patients:
            raise BenchmarkError(
                f"Patient?_total=accurate said {response.json().get('total')}, expected {total_patients}"
            )

    urls = [f"{fhir}/Patient?_total=accurate"] * repeats
    results.append(timed_requests(client, urls, check_total, "search_total", "search: Patient?_total=accurate"))
    return results


# report ------------------------------------------------------------------------------------------
def _verdict(passed: bool | None) -> str:
    return "" if passed is None else "PASS" if passed else "MISS"


def environment() -> dict[str, Any]:
    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "uvicorn": installed("uvicorn"),
        "http_parser": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "event_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "sqlalchemy": installed("SQLAlchemy"),
        "fastapi": installed("fastapi"),
    }


# (heading, width); a negative width aligns left
INGEST_COLUMNS = (
    ("INGEST", -44),
    ("resources", 9),
    ("seconds", 8),
    ("res/s", 9),
    ("raw baseline", 33),
    ("rows/s", 9),
    ("ratio", 7),
    ("target", -17),
    ("result", -6),
)
LATENCY_COLUMNS = (
    ("LATENCY (one keep-alive client, sequential)", -48),
    ("n", 5),
    ("p50 ms", 7),
    ("p95 ms", 7),
    ("req/s", 8),
    ("p50/floor", 9),
    ("p95/floor", 9),
    ("target", -17),
    ("result", -6),
)


def _row(columns: Sequence[tuple[str, int]], cells: Sequence[str]) -> str:
    parts = [
        f"{cell:<{-width}}" if width < 0 else f"{cell:>{width}}"
        for cell, (_, width) in zip(cells, columns, strict=True)
    ]
    return ("  " + " ".join(parts)).rstrip()


def _table(columns: Sequence[tuple[str, int]], rows: list[list[str]]) -> list[str]:
    return [_row(columns, [heading for heading, _ in columns]), *(_row(columns, row) for row in rows)]


def report(results: list[DatabaseResult], options: argparse.Namespace, env: dict[str, Any]) -> str:
    """The human-readable tables."""
    lines = [
        f"fhir-bridge store/API benchmark: --patients {options.patients} --reads {options.reads}"
        f" --searches {options.searches} --seed {options.seed}{' --analyze' if options.analyze else ''}",
        "environment: " + ", ".join(f"{k} {v}" for k, v in env.items()),
        f"HTTP floor body: {len(floor_body())} bytes; every ratio is against a baseline measured in this run",
    ]
    targets = []
    for result in results:
        lines += ["", f"== {result.name}: {result.where} (server pid {result.server_pid}) =="]
        ingest_rows = []
        for ingest in result.ingest:
            target = f">= {ingest.target:,.0f} res/s" if ingest.target else ""
            ingest_rows.append(
                [
                    ingest.label,
                    str(ingest.resources),
                    f"{ingest.seconds:.2f}",
                    f"{ingest.rate:,.0f}",
                    ingest.baseline_label,
                    f"{ingest.baseline_rate:,.0f}",
                    f"{ingest.ratio:.3f}",
                    target,
                    _verdict(ingest.passed),
                ]
            )
            if ingest.passed is not None:
                figure = f"{ingest.rate:,.0f} res/s"
                targets.append(
                    f"  {result.name:<10} {ingest.label:<48} {figure:>15} {target:>18}  {_verdict(ingest.passed)}"
                )
        lines += _table(INGEST_COLUMNS, ingest_rows)
        latency_rows = []
        for latency in result.latency:
            target = f">= {latency.target_rps:,.0f} req/s" if latency.target_rps else ""
            latency_rows.append(
                [
                    latency.label,
                    str(len(latency.milliseconds)),
                    f"{latency.p50:.2f}",
                    f"{latency.p95:.2f}",
                    f"{latency.rps:,.0f}",
                    f"{latency.ratio_p50:.2f}",
                    f"{latency.ratio_p95:.2f}",
                    target,
                    _verdict(latency.passed),
                ]
            )
            if latency.passed is not None:
                figure = f"{latency.rps:,.0f} req/s"
                targets.append(
                    f"  {result.name:<10} {latency.label:<48} {figure:>15} {target:>18}  {_verdict(latency.passed)}"
                )
        lines += ["", *_table(LATENCY_COLUMNS, latency_rows)]
    return "\n".join([*lines, "", "TARGETS (from the issue)", *targets])


# command line ----------------------------------------------------------------------------------
def _databases(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATABASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(DATABASES)} (comma-separated), not {value!r}")
    return names


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return number

    return parse


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(prog="python -m benchmarks.store_api", description=__doc__.split("\n\n")[0])
    command.add_argument(
        "--patients",
        type=_at_least(4),
        default=2000,
        help="Patients to create: N/4 one by one, the rest in transactions (default 2000)",
    )
    command.add_argument(
        "--databases",
        type=_databases,
        default=list(DATABASES),
        help="comma-separated: sqlite,postgresql (default both)",
    )
    command.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"PostgreSQL server; a fresh schema is made and dropped (default {DEFAULT_POSTGRES_URL})",
    )
    command.add_argument("--reads", type=_at_least(1), default=2000, help="sequential Patient reads (default 2000)")
    command.add_argument("--searches", type=_at_least(1), default=200, help="requests per search kind (default 200)")
    command.add_argument(
        "--seed", type=int, default=1, help="seed of the synthetic data and the random picks (default 1)"
    )
    command.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE after ingest, before reads and searches (default: measure the server as it is)",
    )
    command.add_argument("--json", action="store_true", help="also print the results as one line of JSON, last")
    command.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: the server subprocess
    command.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return command


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    if options.serve:
        serve(options.port)
        return 0
    env = environment()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="fhir-bridge-bench-") as temporary:
            directory = Path(temporary)
            for database in options.databases:
                print(f"[{database}] running ...", file=sys.stderr, flush=True)
                if database == "sqlite":
                    results.append(run_database(database, f"sqlite:///{directory / 'store.db'}", directory, options))
                else:
                    with postgres_schema(options.postgres_url) as url:
                        results.append(run_database(database, url, directory, options))
    except (BenchmarkError, OperationalError, httpx.HTTPError) as error:
        print(f"benchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(report(results, options, env))
    if options.json:
        document = {
            "benchmark": "store_api",
            "options": {
                "analyze": options.analyze,
                "patients": options.patients,
                "reads": options.reads,
                "searches": options.searches,
                "seed": options.seed,
            },
            "environment": env,
            "floor_body_bytes": len(floor_body()),
            "databases": {r.name: r.as_json() for r in results},
        }
        print(orjson.dumps(document).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
