"""Crash safety: the service SIGKILLed in the middle of a large DICOM push and of a big transaction Bundle.

The real service runs as a process of its own (``python -m fhir_bridge serve``) on SQLite and on
PostgreSQL. It is killed while a STOW-RS body streams in, and inside the write transaction of a
STOW-RS push and of a transaction Bundle; then restarted on the same database. After each kill
the store must be consistent (``assert_store_consistent``: no index row without its version, no
resource without its current version, every ImagingStudy agreeing with itself), each request
must have been applied whole or not at all, and pushing the same data again must complete it.

Where exactly the kill lands inside the write transaction:

- PostgreSQL: the test holds ``LOCK TABLE commit_clock IN SHARE MODE``. A write transaction takes
  the clock row ``FOR UPDATE`` at its start (compatible with that lock) and updates the row as its
  last statement (not compatible), so the server stops there, with every resource, version and
  index row of the request written but not committed, and is killed at that point exactly.
- SQLite: a probe connection polls for the database's write lock (``BEGIN IMMEDIATE`` with no
  wait) and the server is killed as soon as it holds it, somewhere inside its transaction. A
  commit can win that race; the checks then expect the request applied whole.

That each request is one transaction (so that the kill at its commit covers all of it) is checked
too: the versions written by the re-push all carry one commit's ``lastUpdated``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.engine import make_url

from fhir_bridge.store.tables import CLOCK, INDEX_TABLES, RESOURCE, TOKEN, VERSION
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.server_process import ServerProcess
from tests.store_consistency import assert_store_consistent

pytestmark = pytest.mark.slow  # real server processes, SIGKILLed
BOUNDARY = "crash-safety-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
STUDY_UID = uid(800, 1)
SERIES, PER_SERIES = 6, 100  # 600 instances of one study, about 6 MB
COMMITTED = 150  # instances pushed (and committed) before the push that is killed
SOP_UIDS = [uid(800, 1, s, i) for s in range(1, SERIES + 1) for i in range(1, PER_SERIES + 1)]  # in push order
KILL_WAIT_S = 60.0

# the transaction Bundle: deletes and an update of what exists, conditional creates, many updates
CRASH_SYSTEM = "urn:fhir-bridge:crash-test"
PATIENTS, OBSERVATIONS, OLD = 200, 1300, 10


@pytest.fixture(scope="module")
def study() -> list[bytes]:
    patient = Patient("CRASH-1", "Crash^Test", "19600101", "F")
    return [
        instance(
            "MR_small.dcm",
            patient=patient,
            study_uid=STUDY_UID,
            series_uid=sop_uid.rsplit(".", 1)[0],
            sop_uid=sop_uid,
            series_number=int(sop_uid.split(".")[-2]),
            instance_number=int(sop_uid.split(".")[-1]),
        )
        for sop_uid in SOP_UIDS
    ]


class Service:
    """Starts the service on one database, again and again; knows how to kill it inside a write."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.dialect = make_url(database_url).get_backend_name()
        # PostgreSQL: the server's connections carry a name of their own, to find them in pg_stat_activity
        self.application = f"fhir-bridge-crash-{uuid.uuid4().hex[:8]}"
        separator = "&" if "?" in database_url else "?"
        self.server_url = (
            f"{database_url}{separator}application_name={self.application}"
            if self.dialect == "postgresql"
            else database_url
        )
        self.started: list[ServerProcess] = []

    def start(self) -> ServerProcess:
        server = ServerProcess(self.server_url, self.folder / f"server-{len(self.started)}.log")
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.started:
            server.kill()

    def kill_inside_write(self, server: ServerProcess, send: Callable[[], httpx.Response]) -> str:
        """Run ``send`` and SIGKILL the server inside the write transaction it makes; how the kill landed."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = send()
            except httpx.TransportError as error:
                outcome["error"] = error

        thread = threading.Thread(target=run, daemon=True)
        if self.dialect == "postgresql":
            how = self._kill_before_commit_postgresql(server, thread, outcome)
        else:
            how = self._kill_in_transaction_sqlite(server, thread, outcome)
        print(f"{self.dialect}: the server was killed {how}")  # shown with -s, or when the test fails
        thread.join(timeout=KILL_WAIT_S)
        assert not thread.is_alive(), "the request did not end after the kill"
        if how != "after its commit":
            assert "response" not in outcome, f"the killed server answered: {outcome['response'].status_code}"
        return how

    def _kill_before_commit_postgresql(
        self, server: ServerProcess, thread: threading.Thread, outcome: dict[str, Any]
    ) -> str:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as holder, engine.connect() as watcher:
                holder.execute(text("LOCK TABLE commit_clock IN SHARE MODE"))
                thread.start()
                deadline = time.monotonic() + KILL_WAIT_S
                while not self._backends(watcher, waiting=True):
                    assert thread.is_alive(), f"the request ended before it reached its commit: {outcome}"
                    assert time.monotonic() < deadline, "the server never reached its commit"
                    time.sleep(0.01)
                server.kill()
                holder.rollback()  # the blocked backend goes on, finds its client gone and rolls back
                while self._backends(watcher):
                    assert time.monotonic() < deadline, "the killed server's backends do not end"
                    time.sleep(0.01)
        finally:
            engine.dispose()
        return "just before its commit"

    def _backends(self, connection: Any, waiting: bool = False) -> int:
        condition = " AND wait_event_type = 'Lock'" if waiting else ""
        count = connection.execute(
            text(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = :name{condition}"),
            {"name": self.application},
        ).scalar_one()
        connection.rollback()  # a fresh snapshot of pg_stat_activity next time
        return count

    def _kill_in_transaction_sqlite(
        self, server: ServerProcess, thread: threading.Thread, outcome: dict[str, Any]
    ) -> str:
        path = make_url(self.database_url).database
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as probe:
            thread.start()
            deadline = time.monotonic() + KILL_WAIT_S
            while thread.is_alive():
                try:
                    probe.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as error:  # "database is locked": the server is writing
                    assert "locked" in str(error), error
                    server.kill()
                    return "inside its write transaction"
                probe.execute("ROLLBACK")
                assert time.monotonic() < deadline, "the server never began its write"
                time.sleep(0.001)
        server.kill()
        return "after its commit"


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = Service(database_url, tmp_path)
    yield service
    service.stop_all()


def _clock(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(CLOCK.c.seq)).scalar_one()
    finally:
        engine.dispose()


def _written_since(database_url: str, seq: int) -> dict[tuple[str, str], int]:
    """The versions written after ``seq`` by (type, method); asserts they are of one commit (one lastUpdated)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(VERSION.c.res_type, VERSION.c.method, VERSION.c.last_updated).where(VERSION.c.seq > seq)
            ).all()
    finally:
        engine.dispose()
    assert len({row.last_updated for row in rows}) == 1, "the request was written in more than one transaction"
    return dict(Counter((row.res_type, row.method) for row in rows))


# DICOM -------------------------------------------------------------------------------------------
def _stow(server: ServerProcess, body: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        f"{server.dicomweb}/studies", content=body, headers={"Content-Type": STOW_TYPE}, timeout=KILL_WAIT_S
    )


def _stored(response: httpx.Response) -> list[str]:
    return [item["00081155"]["Value"][0] for item in response.json().get("00081199", {}).get("Value", [])]


def _study_instances(server: ServerProcess) -> set[str]:
    """The instances the stored study holds, read through the FHIR API (and checked against its counts)."""
    bundle = httpx.get(
        f"{server.fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{STUDY_UID}"}, timeout=30
    ).json()
    entries = bundle.get("entry", [])
    assert len(entries) == 1, bundle
    study = entries[0]["resource"]
    read = httpx.get(f"{server.fhir}/ImagingStudy/{study['id']}", timeout=30)
    assert read.status_code == 200 and read.json() == study
    assert httpx.get(f"{server.fhir}/{study['subject']['reference']}", timeout=30).status_code == 200
    uids = [i["uid"] for s in study["series"] for i in s["instance"]]
    assert study["numberOfInstances"] == len(uids) == len(set(uids))
    assert study["numberOfSeries"] == len(study["series"])
    return set(uids)


def _total(server: ServerProcess, resource_type: str, **parameters: str) -> int:
    response = httpx.get(f"{server.fhir}/{resource_type}", params={"_summary": "count", **parameters}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_dicom_push_killed_mid_body_and_mid_transaction(service: Service, study: list[bytes]) -> None:
    every, committed = set(SOP_UIDS), set(SOP_UIDS[:COMMITTED])
    first, rest = study[:COMMITTED], study[COMMITTED:]
    server = service.start()
    response = _stow(server, multipart(first, BOUNDARY))
    assert response.status_code == 200 and set(_stored(response)) == committed

    # 1. killed while the body of the next push streams in (the server has spooled and read part of it)
    body = multipart(rest, BOUNDARY)
    halfway, killed = threading.Event(), threading.Event()

    def stream() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            if start >= len(body) // 2 and not halfway.is_set():
                halfway.set()
                killed.wait(KILL_WAIT_S)
            yield body[start : start + 64 * 1024]

    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = _stow(server, stream())
        except httpx.TransportError as error:
            outcome["error"] = error

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert halfway.wait(KILL_WAIT_S)
    time.sleep(0.3)  # let the server take in what was sent
    server.kill()
    killed.set()
    sender.join(KILL_WAIT_S)
    assert "error" in outcome, outcome

    server = service.start()
    counts = assert_store_consistent(service.database_url)
    assert (counts["ImagingStudy"], counts["Patient"], counts["Provenance"]) == (1, 1, 1)
    assert _study_instances(server) == committed

    # 2. killed inside the write transaction of that push, sent whole this time
    how = service.kill_inside_write(server, lambda: _stow(server, body))
    server = service.start()
    counts = assert_store_consistent(service.database_url)
    found = _study_instances(server)
    if how == "after its commit":  # SQLite: the commit won the race with the kill
        assert found == every and counts["Provenance"] == 2, how
    else:  # all or nothing: nothing of the killed request, not even its Provenance
        assert found == committed and counts["Provenance"] == 1, how
    assert _total(server, "Provenance") == counts["Provenance"]

    # 3. the same data pushed again completes the study, in one transaction
    before = _clock(service.database_url)
    response = _stow(server, multipart(study, BOUNDARY))
    assert response.status_code == 200, response.text
    assert set(_stored(response)) == every
    if how != "after its commit":
        assert _written_since(service.database_url, before) == {("ImagingStudy", "PUT"): 1, ("Provenance", "POST"): 1}
    assert _study_instances(server) == every
    counts = assert_store_consistent(service.database_url)
    assert counts["ImagingStudy"] == 1 and counts["Patient"] == 1
    assert _total(server, "ImagingStudy", modality="MR") == 1


# transaction Bundle ------------------------------------------------------------------------------
def _existing() -> list[dict[str, Any]]:
    """What is stored before the Bundle: what it deletes, and the Patient it updates."""
    old = [{"resourceType": "Basic", "id": f"old-{n}", "code": {"text": "to be deleted"}} for n in range(OLD)]
    anchor = {"resourceType": "Patient", "id": "anchor", "identifier": [{"system": CRASH_SYSTEM, "value": "anchor"}]}
    return [*old, anchor]


def _bundle() -> dict[str, Any]:
    entries: list[dict[str, Any]] = [{"request": {"method": "DELETE", "url": f"Basic/old-{n}"}} for n in range(OLD)]
    anchor = {**_existing()[-1], "gender": "female"}
    entries.append({"resource": anchor, "request": {"method": "PUT", "url": "Patient/anchor"}})
    for p in range(PATIENTS):
        identifier = f"{CRASH_SYSTEM}|P{p}"
        patient = {"resourceType": "Patient", "identifier": [{"system": CRASH_SYSTEM, "value": f"P{p}"}]}
        request = {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={identifier}"}
        entries.append({"fullUrl": f"urn:uuid:{uuid.UUID(int=p)}", "resource": patient, "request": request})
    for o in range(OBSERVATIONS):
        observation = {
            "resourceType": "Observation",
            "id": f"obs-{o}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
            "subject": {"reference": f"urn:uuid:{uuid.UUID(int=o % PATIENTS)}"},
            "effectiveDateTime": f"2024-01-{1 + o % 28:02d}",
            "valueQuantity": {"value": 150 + o % 50, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
        }
        entries.append({"resource": observation, "request": {"method": "PUT", "url": f"Observation/obs-{o}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _bundle_state(server: ServerProcess) -> dict[str, int]:
    """How much of the Bundle is in the store, through the FHIR API."""
    return {
        "patients": _total(server, "Patient", identifier=f"{CRASH_SYSTEM}|") - 1,  # without the anchor
        "observations": _total(server, "Observation"),
        "old alive": _total(server, "Basic"),
        "anchor version": int(httpx.get(f"{server.fhir}/Patient/anchor", timeout=30).json()["meta"]["versionId"]),
    }


BEFORE = {"patients": 0, "observations": 0, "old alive": OLD, "anchor version": 1}
AFTER = {"patients": PATIENTS, "observations": OBSERVATIONS, "old alive": 0, "anchor version": 2}


def _post_bundle(server: ServerProcess, bundle: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.fhir,
        json=bundle,
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
        timeout=KILL_WAIT_S,
    )


def test_transaction_bundle_killed_mid_processing(service: Service) -> None:
    server = service.start()
    for resource in _existing():
        url = f"{server.fhir}/{resource['resourceType']}/{resource['id']}"
        assert httpx.put(url, json=resource, timeout=30).status_code == 201
    assert _bundle_state(server) == BEFORE
    bundle = _bundle()

    how = service.kill_inside_write(server, lambda: _post_bundle(server, bundle))
    server = service.start()
    counts = assert_store_consistent(service.database_url)
    state = _bundle_state(server)
    if how == "after its commit":  # SQLite: the commit won the race with the kill
        assert state == AFTER, how
    else:  # all or nothing
        assert state == BEFORE, how
        assert counts == {"Patient": 1, "Basic": OLD}

    before = _clock(service.database_url)
    response = _post_bundle(server, bundle)
    assert response.status_code == 200, response.text
    if how != "after its commit":  # one transaction: every version it wrote has the same lastUpdated
        assert _written_since(service.database_url, before) == {
            ("Basic", "DELETE"): OLD,
            ("Patient", "PUT"): 1,
            ("Patient", "POST"): PATIENTS,
            ("Observation", "PUT"): OBSERVATIONS,
        }
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    assert len(statuses) == len(bundle["entry"])
    assert all(status.startswith(("200", "201", "204")) for status in statuses), set(statuses)
    assert _bundle_state(server) == AFTER
    counts = assert_store_consistent(service.database_url)
    assert counts == {"Patient": PATIENTS + 1, "Observation": OBSERVATIONS}
    # the references of the Bundle resolved to the Patients it created, searchable by chain and _include
    found = httpx.get(
        f"{server.fhir}/Observation",
        params={"subject:Patient.identifier": f"{CRASH_SYSTEM}|P7", "_include": "Observation:subject"},
        timeout=30,
    ).json()
    modes = sorted(entry["search"]["mode"] for entry in found["entry"])
    assert modes == ["include"] + ["match"] * (OBSERVATIONS // PATIENTS + (OBSERVATIONS % PATIENTS > 7))
    assert httpx.get(f"{server.fhir}/Basic/old-0", timeout=30).status_code == 410


# the check itself --------------------------------------------------------------------------------
def test_the_consistency_check_finds_damage(client, database_url: str) -> None:
    """Each kind of damage the crash tests look for is reported (then repaired, and the store passes again)."""
    parts = _study_parts_small()
    response = client.post("/dicomweb/studies", content=multipart(parts, BOUNDARY), headers={"Content-Type": STOW_TYPE})
    assert response.status_code == 200
    study = client.get("/fhir/ImagingStudy").json()["entry"][0]["resource"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "a note"},
        "subject": study["subject"],
        "valueString": "x",
    }
    assert client.post("/fhir/Observation", json=observation).status_code == 201
    assert assert_store_consistent(database_url)["ImagingStudy"] == 1

    engine = create_engine(database_url)
    tables = {table.name: table for table in (RESOURCE, VERSION, *INDEX_TABLES.values())}

    def rows(connection: Any, table: str, **where: Any) -> list[dict[str, Any]]:
        t = tables[table]
        return [r._asdict() for r in connection.execute(select(t).where(*(t.c[k] == v for k, v in where.items())))]

    with engine.begin() as connection:
        pk, seq, content = connection.execute(
            select(RESOURCE.c.pk, RESOURCE.c.seq, RESOURCE.c.content).where(RESOURCE.c.res_type == "ImagingStudy")
        ).one()
        saved_version = rows(connection, "resource_version", seq=seq)
        saved_index = rows(connection, "idx_token", res_pk=pk, param="identifier")[:1]
    broken = orjson.loads(content)
    broken["numberOfInstances"] += 1
    broken = orjson.dumps(broken).decode()
    damages = [  # (what, how to break it, how to repair it, what the report says)
        (
            "a version lost",
            [delete(VERSION).where(VERSION.c.seq == seq)],
            [insert(VERSION).values(saved_version)],
            "has no version at all",
        ),
        (
            "an orphan index row",
            [insert(TOKEN).values(res_pk=pk, res_type="ImagingStudy", param="identifier", seq_from=10**9, code="x")],
            [delete(TOKEN).where(TOKEN.c.seq_from == 10**9)],
            "belongs to no version",
        ),
        (
            "an index row lost",
            [delete(TOKEN).where(TOKEN.c.id == saved_index[0]["id"])],
            [insert(TOKEN).values(saved_index)],
            "idx_token rows differ from its content",
        ),
        (
            "a stale index row",
            [update(TOKEN).where(TOKEN.c.id == saved_index[0]["id"]).values(seq_to=seq)],
            [update(TOKEN).where(TOKEN.c.id == saved_index[0]["id"]).values(seq_to=None)],
            "is valid to",
        ),
        (
            "an ImagingStudy that disagrees with itself",
            [
                update(RESOURCE).where(RESOURCE.c.pk == pk).values(content=broken),
                update(VERSION).where(VERSION.c.seq == seq).values(content=broken),
            ],
            [
                update(RESOURCE).where(RESOURCE.c.pk == pk).values(content=content),
                update(VERSION).where(VERSION.c.seq == seq).values(content=content),
            ],
            "numberOfInstances 4, but 3 instances",
        ),
        (
            "a dangling reference",
            [update(RESOURCE).where(RESOURCE.c.res_type == "Patient").values(deleted=True)],
            [update(RESOURCE).where(RESOURCE.c.res_type == "Patient").values(deleted=False)],
            "which does not exist",
        ),
    ]
    try:
        for what, damage, repair, report in damages:
            with engine.begin() as connection:
                for statement in damage:
                    connection.execute(statement)
            with pytest.raises(AssertionError, match=report):
                assert_store_consistent(database_url)
                pytest.fail(f"{what} went unnoticed")
            with engine.begin() as connection:
                for statement in repair:
                    connection.execute(statement)
        assert_store_consistent(database_url)
    finally:
        engine.dispose()


def _study_parts_small() -> list[bytes]:
    patient = Patient("CHECK-1", "Check^Test", "19700101", "M")
    return [
        instance("MR_small.dcm", patient=patient, study_uid=uid(801), series_uid=uid(801, 1), sop_uid=uid(801, 1, i))
        for i in (1, 2, 3)
    ]
