"""Prometheus metrics at /metrics: off by default, open or behind a scope; what they count after real work."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydicom import dcmread
from pynetdicom import AE

from fhir_bridge import Settings, create_app
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.security.clients import ClientRegistry
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.dicom_samples import multipart, study_set
from tests.dimse_peers import AE_TITLE, listening
from tests.security_helpers import bearer, ec_key
from tests.server_process import first_answer

STOW = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'
EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def open_metrics(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, metrics="open"))
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def test_metrics_are_off_unless_switched_on(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404
    app.state.services.close()


def test_metrics_count_requests_ingests_and_exports_by_template_path_and_outcome(open_metrics: TestClient) -> None:
    client = open_metrics
    before = samples(client.get("/metrics").text)
    parts = [data for _, data in study_set(studies=1, series=1, instances=3)]
    assert client.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": STOW}).status_code == 200
    upload = client.post(
        "/ingest/clinical",
        params={"mapping": "patient-demographics"},
        content=(EXAMPLES / "patient-demographics.csv").read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    assert upload.status_code == 200
    created = upload.json()["summary"]["created"]
    patient = client.get("/fhir/Patient", params={"_count": 1}).json()["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/Patient/{patient}").status_code == 200
    kicked = client.get("/fhir/$export", headers={"Prefer": "respond-async"})
    deadline = time.monotonic() + 60
    while client.get(kicked.headers["content-location"]).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    exposition = client.get("/metrics")
    assert exposition.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = samples(exposition.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("fhir_bridge_ingest_total", path="stow", outcome="stored") == 3
    assert grew("fhir_bridge_ingest_total", path="clinical", outcome="created") == created > 0
    read = {"method": "GET", "route": "/fhir/{resource_type}/{resource_id}", "status": "200"}
    assert grew("fhir_bridge_http_requests_total", **read) == 1
    assert grew("fhir_bridge_http_request_duration_seconds_count", method="GET", route=read["route"]) == 1
    assert grew("fhir_bridge_http_requests_total", method="POST", route="/dicomweb/studies", status="200") == 1
    assert grew("fhir_bridge_bulk_jobs_total", outcome="completed") == 1
    assert grew("fhir_bridge_audit_write_seconds_count") >= 5
    assert patient not in exposition.text  # by template, never by the path sent
    assert any(name == "fhir_bridge_database_connections" for name, _ in after)


def test_metrics_behind_a_token_need_the_metrics_scope(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY, metrics="token")
    app = create_app(settings)
    keys = {"prometheus": ec_key(), "harvester": ec_key()}
    registry = ClientRegistry(app.state.services.engines)
    registry.add("prometheus", "system/Metrics.r", jwks=keys["prometheus"].jwks(), jwks_url=None)
    registry.add("harvester", "system/*.rs", jwks=keys["harvester"].jwks(), jwks_url=None)
    with TestClient(app, base_url="http://testserver") as client:
        assert client.get("/metrics").status_code == 401
        harvester = bearer(client, "harvester", keys["harvester"], "system/*.rs")
        assert client.get("/metrics", headers=harvester).status_code == 403  # a wildcard is no metrics scope
        prometheus = bearer(client, "prometheus", keys["prometheus"], "system/Metrics.r")
        assert client.get("/metrics", headers=prometheus).status_code == 200
        assert client.get("/fhir/Patient", headers=prometheus).status_code == 403  # and it reads nothing else
    app.state.services.close()


def test_metrics_behind_a_token_without_access_control_is_refused(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="metrics"):
        create_app(Settings(database_url=database_url, auth="none", pseudonym_key=TEST_PSEUDONYM_KEY, metrics="token"))


def test_several_processes_sum_their_metrics_in_multiprocess_mode(tmp_path: Path) -> None:
    """A folder ingest in another process shows in the server's /metrics when both share the folder."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    database = f"sqlite:///{tmp_path / 'store.db'}"
    environment = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "FHIR_BRIDGE_METRICS": "open",
        "FHIR_BRIDGE_DATABASE_URL": database,
    }
    folder = tmp_path / "export"
    folder.mkdir()
    for number, (_, data) in enumerate(study_set(studies=1, series=1, instances=2)):
        (folder / f"{number}.dcm").write_bytes(data)
    fhir_bridge = [sys.executable, "-m", "fhir_bridge"]
    done = subprocess.run([*fhir_bridge, "ingest", str(folder), "--no-progress"], env=environment, capture_output=True)
    assert done.returncode == 0, done.stderr
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*fhir_bridge, "serve", "--port", str(port)], env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        exposition = first_answer(f"http://127.0.0.1:{port}/metrics", server, log.read_text)
        found = samples(exposition.text)
        assert value(found, "fhir_bridge_ingest_total", path="folder", outcome="stored") == 2, json.dumps(
            [k for k in found if "ingest" in k[0]]
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_instances_received_by_c_store_are_counted_as_the_dimse_path(database_url: str, tmp_path: Path) -> None:
    def dimse_stored() -> float:
        return REGISTRY.get_sample_value("fhir_bridge_ingest_total", {"path": "dimse", "outcome": "stored"}) or 0.0

    datasets = [dcmread(io.BytesIO(data)) for _, data in study_set(studies=1, series=1, instances=2)]
    before = dimse_stored()
    with listening(database_url, tmp_path / "spool") as (bridge, _app):
        sender = AE("PYNETDICOM")
        for dataset in datasets:
            sender.add_requested_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])
        association = sender.associate("127.0.0.1", bridge.port, ae_title=AE_TITLE)
        assert association.is_established
        assert [association.send_c_store(dataset).Status for dataset in datasets] == [0, 0]
        association.release()
        assert bridge.drain()
    assert dimse_stored() - before == 2
