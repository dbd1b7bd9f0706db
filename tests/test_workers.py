"""Several worker processes over one PostgreSQL database behave as one server.

Three ``fhir-bridge serve`` processes, each on its own port, stand for the workers behind a load
balancer (one public base URL, as ``FHIR_BRIDGE_PUBLIC_BASE_URL`` says): what one worker hands out
(search cursors, tokens, bulk export jobs and files) is used on another, and concurrent STOW-RS
pushes of one study to different workers end in exactly the union of their instances. A last test
starts ``fhir-bridge serve --workers 3`` (uvicorn's worker processes on one port).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from fhir_bridge.security.clients import ClientRegistry
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from tests.bulk_client import wait
from tests.conftest import free_port
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.security_helpers import assertion, ec_key
from tests.server_process import first_answer

pytestmark = pytest.mark.slow

PUBLIC = "http://fhir.hospital.example/fhir"  # the load balancer's address, as clients see it
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
START_TIMEOUT_S = 90.0


class Worker:
    def __init__(self, database_url: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        env = {**os.environ, "FHIR_BRIDGE_AUTH": "smart", "FHIR_BRIDGE_PUBLIC_BASE_URL": PUBLIC}
        command = [sys.executable, "-m", "fhir_bridge", "serve", "--database-url", database_url]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), *extra], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.log = log
        self.base = f"http://127.0.0.1:{self.port}/fhir"

    def wait_ready(self) -> None:
        answer = first_answer(f"{self.base}/metadata", self.process, self.log.read_text, START_TIMEOUT_S)
        assert answer.status_code == 200, answer.text

    def here(self, url: str) -> str:
        """A URL the server handed out (on the public base), sent to this worker."""
        assert url.startswith(PUBLIC), url
        return self.base + url[len(PUBLIC) :]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def database_url(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL schema for the module: the three workers start once for its tests."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="module")
def client_key(database_url: str):  # type: ignore[no-untyped-def]
    """A backend client registered in the database, before any worker starts."""
    engines = create_engines(database_url)
    prepare_schema(engines)
    key = ec_key("workers-1")
    ClientRegistry(engines).add("harvester", "system/*.*", jwks=key.jwks(), jwks_url=None)
    engines.dispose()
    return key


@pytest.fixture(scope="module")
def workers(database_url: str, client_key, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:  # type: ignore[no-untyped-def]
    logs = tmp_path_factory.mktemp("workers")
    started = [Worker(database_url, logs / f"worker{n}.log") for n in range(3)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


def token(worker: Worker, key) -> str:  # type: ignore[no-untyped-def]
    answer = httpx.post(
        f"{worker.base}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion("harvester", key, audience=f"{PUBLIC}/auth/token"),
            "scope": "system/*.*",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_what_one_worker_hands_out_works_on_the_others(workers: list[Worker], client_key) -> None:  # type: ignore[no-untyped-def]
    a, b, c = workers
    headers = {"Authorization": f"Bearer {token(a, client_key)}", "Content-Type": "application/fhir+json"}
    with httpx.Client(headers=headers, timeout=60) as http:
        # a token issued by one worker is accepted by the others
        created = set()
        for n, worker in enumerate([b, c] * 12 + [b]):
            answer = http.post(
                f"{worker.base}/Patient",
                json={"resourceType": "Patient", "gender": "other", "birthDate": f"19{50 + n}"},
            )
            assert answer.status_code == 201, answer.text
            created.add(answer.json()["id"])
        # paging: each page's next link followed on the next worker
        page = http.get(f"{a.base}/Patient", params={"gender": "other", "_count": 10}).json()
        seen = [e["resource"]["id"] for e in page["entry"]]
        pages = 1
        while next_link := next((link["url"] for link in page["link"] if link["relation"] == "next"), None):
            worker = workers[pages % 3]
            page = http.get(worker.here(next_link)).json()
            seen += [e["resource"]["id"] for e in page.get("entry", [])]
            pages += 1
        assert pages == 3 and len(seen) == len(created) and set(seen) == created
        # a bulk export started on one worker, polled on another, downloaded from the third
        kick_off = http.get(f"{a.base}/$export", headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})
        assert kick_off.status_code == 202, kick_off.text
        status, _ = wait(http, b.here(kick_off.headers["Content-Location"]))
        assert status.status_code == 200, status.text
        exported = []
        for item in status.json()["output"]:
            lines = http.get(c.here(item["url"]), headers={"Accept": "application/fhir+ndjson"})
            assert lines.status_code == 200, lines.text
            exported += [json.loads(line) for line in lines.text.splitlines() if line]
        patients = [r["id"] for r in exported if r["resourceType"] == "Patient" and r.get("gender") == "other"]
        assert sorted(patients) == sorted(created)


def test_concurrent_stow_pushes_of_one_study_to_different_workers_end_in_the_union(
    workers: list[Worker], client_key
) -> None:  # type: ignore[no-untyped-def]
    patient = Patient("PID-W1", "Testperson^Workers", "19700101")
    bodies = [
        multipart(
            [
                instance(
                    "CT_small.dcm",
                    patient=patient,
                    study_uid=uid(77),
                    series_uid=uid(77, s),
                    sop_uid=uid(77, s, i),
                    series_number=s,
                    instance_number=i,
                )
                for i in range(1, 4)
            ]
        )
        for s in range(1, 7)  # six series, two pushed to each worker, all at once
    ]
    headers = {"Authorization": f"Bearer {token(workers[0], client_key)}", "Content-Type": STOW_TYPE}

    def push(n: int) -> int:
        worker = workers[n % 3]
        return httpx.post(
            f"{worker.base.removesuffix('/fhir')}/dicomweb/studies", content=bodies[n], headers=headers, timeout=120
        ).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        assert list(pool.map(push, range(len(bodies)))) == [200] * len(bodies)
    read = {"Authorization": headers["Authorization"]}
    bundle = httpx.get(f"{workers[1].base}/ImagingStudy", headers=read, timeout=30).json()
    assert bundle.get("total", len(bundle["entry"])) == 1 and len(bundle["entry"]) == 1
    study = bundle["entry"][0]["resource"]
    assert study["numberOfSeries"] == 6 and study["numberOfInstances"] == 18
    instances = {i["uid"] for series in study["series"] for i in series["instance"]}
    assert len(study["series"]) == 6 and len(instances) == 18


def test_serve_with_workers_runs_that_many_processes_on_one_port(database_url: str, client_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    worker = Worker(database_url, tmp_path / "serve.log", "--workers", "3")
    try:
        worker.wait_ready()
        children = Path(f"/proc/{worker.process.pid}/task/{worker.process.pid}/children").read_text().split()
        assert len(children) >= 3  # uvicorn's workers (and its spawn helper, if any)
        headers = {"Authorization": f"Bearer {token(worker, client_key)}"}
        with httpx.Client(headers=headers, timeout=30) as http:
            answers = [http.get(f"{worker.base}/Patient", params={"_count": 1}).status_code for _ in range(12)]
        assert answers == [200] * 12
    finally:
        worker.stop()
