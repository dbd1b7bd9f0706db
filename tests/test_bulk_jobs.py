"""Export jobs live in the database: they survive a restart, any app on the same database answers
for them, a job whose worker died is taken over when its lease runs out and finished without a
gap or a repeat, a cancelled job's files are gone, and files are cut into bounded parts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from fhir_bridge import Settings, create_app
from fhir_bridge.bulk.jobs import JobStore, LeaseLost
from fhir_bridge.bulk.model import Cursor, Limits, Status
from fhir_bridge.bulk.runner import Outcome, run_job
from fhir_bridge.bulk.service import BulkExports
from fhir_bridge.bulk.tables import BULK_CHUNK, BULK_FILE, BULK_JOB
from tests.bulk_client import create, download, kick_off, patient, populate, read_raw, study, wait


@pytest.fixture
def apps(settings: Settings) -> Iterator[list[FastAPI]]:
    """Apps made on the test's database; all are shut down (worker stopped, engines disposed) after."""
    made: list[FastAPI] = []
    yield made
    for app in made:
        app.state.services.bulk_exports.worker.stop()
        app.state.services.close()


def _app(apps: list[FastAPI], settings: Settings, workers: int) -> FastAPI:
    app = create_app(settings.model_copy(update={"bulk_workers": workers}))
    apps.append(app)
    return app


def _wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _exported(client, status_url: str) -> list[str]:
    finished, _ = wait(client, status_url)
    assert finished.status_code == 200, finished.text
    files = download(client, finished.json())
    return [line for lines in files.values() for line in lines]


def test_a_job_survives_a_restart_and_any_app_answers_for_it(apps, settings: Settings) -> None:
    api_only = _app(apps, settings, workers=0)  # answers kick-off and status, runs nothing
    with TestClient(api_only) as client:
        population = populate(client)
        response = kick_off(client, "/fhir/$export?_type=Patient,ImagingStudy")
        assert response.status_code == 202
        status_url = response.headers["Content-Location"]
        before = [read_raw(client, "Patient", p) for p in population.patients]
        # written after the kick-off: not in the export, which is pinned to the kick-off's commit
        late = create(client, patient("Late"))["id"]
        renamed = orjson.loads(before[0])
        renamed["name"] = [{"family": "Renamed"}]
        assert client.put(f"/fhir/Patient/{renamed['id']}", json=renamed).status_code == 200
        time.sleep(0.3)
        progress = client.get(status_url)
        assert progress.status_code == 202 and progress.headers["X-Progress"] == "queued"
    api_only.state.services.close()  # "the server stops"

    restarted = _app(apps, settings, workers=1)  # resumes pending jobs when it is created
    with TestClient(_app(apps, settings, workers=0)) as other:  # a second API worker on the same database
        lines = _exported(other, status_url)
    patients = [line for line in lines if '"resourceType":"Patient"' in line]
    assert sorted(patients) == sorted(before)  # the first version of the renamed one; not the late one
    assert late not in "".join(lines)
    assert len(lines) == 3 + 6
    _wait_until(lambda: not restarted.state.services.bulk_exports.worker.running)  # idle: its thread has ended


def test_a_job_is_taken_over_when_its_workers_lease_runs_out(apps, settings: Settings) -> None:
    api_only = _app(apps, settings, workers=0)
    with TestClient(api_only) as client:
        ids = [create(client, patient(f"P{i}"))["id"] for i in range(7)]
        ids += [create(client, study(ids[i], "CT"))["id"] for i in range(5)]
        response = kick_off(client, "/fhir/$export?_type=ImagingStudy,Patient")
        status_url = response.headers["Content-Location"]
        stored = sorted(
            [read_raw(client, "Patient", i) for i in ids[:7]] + [read_raw(client, "ImagingStudy", i) for i in ids[7:]]
        )
    engines = api_only.state.services.engines
    jobs = JobStore(engines)
    # a worker claims the job, commits part of it in small chunks and files, then dies (stops renewing)
    small = Limits(batch_rows=2, chunk_bytes=300, file_resources=4, lease_seconds=1.0)
    claimed = jobs.claim("dead-worker", small.lease_seconds)
    assert claimed is not None and claimed.status is Status.IN_PROGRESS
    batches = iter(range(4))
    outcome = run_job(engines, jobs, claimed, "dead-worker", small, lambda: next(batches, None) is None)
    assert outcome is Outcome.STOPPED
    partial = jobs.get(claimed.id)
    assert partial.status is Status.IN_PROGRESS and 0 < partial.exported < len(stored)

    survivor = _app(apps, settings, workers=1)  # sees the pending job; takes it when the lease is over
    with TestClient(_app(apps, settings, workers=0)) as other:
        lines = _exported(other, status_url)
    assert sorted(lines) == stored  # nothing lost or repeated across the take-over
    finished = jobs.get(claimed.id)
    assert finished.status is Status.COMPLETED and finished.exported == len(stored)
    assert [f.count for f in jobs.files(claimed.id) if f.res_type == "ImagingStudy"] == [4, 1]
    # the dead worker's writes are fenced off: its lease belongs to nobody now
    with pytest.raises(LeaseLost):
        jobs.write(claimed.id, "dead-worker", 1.0, cursor=Cursor(), exported=0)
    survivor.state.services.bulk_exports.worker.stop()


def test_cancel_removes_the_job_and_its_files(apps, settings: Settings) -> None:
    app = _app(apps, settings, workers=1)
    with TestClient(app) as client:
        populate(client)
        finished_url = kick_off(client, "/fhir/$export").headers["Content-Location"]
        assert _exported(client, finished_url)
        manifest = client.get(finished_url).json()
        engines = app.state.services.engines
        with engines.reader.connect() as connection:
            assert connection.execute(select(func.count()).select_from(BULK_CHUNK)).scalar_one() > 0
        response = client.delete(finished_url)
        assert response.status_code == 202
        assert response.json()["issue"][0]["severity"] == "information"
        assert client.get(finished_url).status_code == 404
        assert client.get(manifest["output"][0]["url"]).status_code == 404
        with engines.reader.connect() as connection:
            assert connection.execute(select(func.count()).select_from(BULK_CHUNK)).scalar_one() == 0
            assert connection.execute(select(func.count()).select_from(BULK_FILE)).scalar_one() == 0

    queued = _app(apps, settings, workers=0)
    with TestClient(queued) as client:
        status_url = kick_off(client, "/fhir/$export").headers["Content-Location"]
        assert client.delete(status_url).status_code == 202
        assert client.get(status_url).status_code == 404
    runner = _app(apps, settings, workers=1)
    assert not runner.state.services.bulk_exports.worker.running  # nothing pending: no thread was started
    job_id = status_url.rsplit("/", 1)[1]
    assert JobStore(runner.state.services.engines).get(job_id).status is Status.CANCELLED


def test_files_are_cut_into_bounded_parts_and_chunks(apps, settings: Settings) -> None:
    app = _app(apps, settings, workers=0)
    limits = Limits(batch_rows=3, chunk_bytes=400, file_resources=5)
    exports = BulkExports(app.state.services.engines, limits, threads=1)
    with TestClient(app) as client:
        ids = [create(client, patient(f"Part{i}"))["id"] for i in range(12)]
        job = exports.kick_off("system", [("_type", "Patient")], lenient=False, request_url="http://x/fhir/$export")
        _wait_until(lambda: exports.jobs.get(job.id).status is Status.COMPLETED)
        files = exports.files(job.id)
        assert [f.count for f in files] == [5, 5, 2]
        assert all(f.chunks > 1 for f in files[:2])  # each chunk holds whole lines, about 400 characters
        lines = _exported(client, f"/fhir/$export-status/{job.id}")  # served by the app, from the database
        assert sorted(lines) == sorted(read_raw(client, "Patient", i) for i in ids)
    exports.worker.stop()


def test_a_job_that_cannot_run_fails_with_an_operation_outcome(apps, settings: Settings) -> None:
    api_only = _app(apps, settings, workers=0)
    with TestClient(api_only) as client:
        status_url = kick_off(client, "/fhir/$export?_type=ImagingStudy").headers["Content-Location"]
    job_id = status_url.rsplit("/", 1)[1]
    with api_only.state.services.engines.writer.begin() as connection:  # a stored request this version cannot run
        stored = orjson.loads(connection.execute(select(BULK_JOB.c.parameters)).scalar_one())
        stored["type_filters"] = {"ImagingStudy": ["started=sometime"]}
        connection.execute(update(BULK_JOB).values(parameters=orjson.dumps(stored).decode()))
    worker_app = _app(apps, settings, workers=1)
    with TestClient(worker_app) as client:
        _wait_until(lambda: JobStore(worker_app.state.services.engines).get(job_id).status is Status.FAILED)
        response = client.get(status_url)
        assert response.status_code == 500
        assert "sometime" in response.json()["issue"][0]["diagnostics"]
        assert client.delete(status_url).status_code == 202  # a failed job can be deleted too
