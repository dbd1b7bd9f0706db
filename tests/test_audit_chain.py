"""The audit trail's integrity: group commit, the keyed hash chain, `audit verify`, `audit purge`.

Tampering is done the way an intruder with database access would: SQL straight on the tables.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import Column, Connection, MetaData, Table, insert, select, text

from fhir_bridge import Settings, cli, create_app
from fhir_bridge.audit.chain import ChainKey, ChainKeyMismatch
from fhir_bridge.audit.commit import GroupCommit
from fhir_bridge.audit.log import CHECKPOINT_EVERY, AuditEntry, AuditLog, now_us
from fhir_bridge.audit.tables import AUDIT, AUDIT_CHAIN
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.services import Services
from tests.conftest import TEST_PSEUDONYM_KEY

DAY_US = 86_400 * 1_000_000


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    with Services.from_settings(settings) as built:
        yield built


@pytest.fixture
def trail(services: Services) -> AuditLog:
    return services.audit_log


def entry(n: int, *, recorded: int | None = None, path: str | None = None) -> AuditEntry:
    return AuditEntry(
        recorded=recorded if recorded is not None else now_us(),
        client_id="reader",
        interaction="read",
        action="R",
        method="GET",
        path=path or f"/fhir/Patient/p{n}",
        query=None,
        entity=f"Patient/p{n}",
        entity_type="Patient",
        status=200,
        detail=None,
        address="127.0.0.1",
    )


def _write(trail: AuditLog, count: int, **options: int) -> None:
    for n in range(count):
        trail.record(entry(n, **options))


def _sql(trail: AuditLog, statement: str) -> None:
    with trail.engines.writer.begin() as connection:
        connection.execute(text(statement))


def _ids(trail: AuditLog) -> list[int]:
    with trail.engines.reader.connect() as connection:
        return list(connection.execute(select(AUDIT.c.id).order_by(AUDIT.c.id)).scalars())


def _verify_cli(database_url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = cli.main(["audit", "verify", "--database-url", database_url, *extra])
    return code, capsys.readouterr().out


def test_an_intact_trail_verifies_and_the_command_exits_zero(
    trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(trail, 6)
    report = trail.verify()
    assert report.intact and report.chained == 6 and report.unchained == 0 and report.keyed
    code, out = _verify_cli(database_url, capsys)
    assert code == 0, out
    assert "intact: 6 chained records (1 to 6)" in out
    head = out.split("head: ")[1].split()[0]
    assert _verify_cli(database_url, capsys, "--expect", head)[0] == 0


def test_an_edited_record_is_named_and_the_command_exits_non_zero(
    trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(trail, 6)
    _sql(trail, "UPDATE audit_event SET client_id = 'someone-else' WHERE id = 4")
    report = trail.verify()
    assert [p.record_id for p in report.problems] == [4]  # the records after it still verify
    code, out = _verify_cli(database_url, capsys)
    assert code == 1
    assert "TAMPERED: the first bad record is 4: was edited" in out
    # an edit that also writes a hash of its own making is no better: it has no key
    _sql(trail, "UPDATE audit_event SET status = 404, hash = 'abc' WHERE id = 2")
    assert [p.record_id for p in trail.verify().problems] == [2, 3, 4]  # 3 was chained to 2's true hash


def test_a_deleted_record_is_named_also_the_newest(
    trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(trail, 6)
    _sql(trail, "DELETE FROM audit_event WHERE id IN (3, 4)")
    report = trail.verify()
    assert [(p.record_id, p.what) for p in report.problems] == [
        (3, "is missing: deleted, with the records after it up to 4")
    ]
    _sql(trail, "DELETE FROM audit_event WHERE id = 6")
    code, out = _verify_cli(database_url, capsys)
    assert code == 1
    assert "the first bad record is 3" in out and "record 6: is missing (the newest): deleted" in out


def test_the_newest_records_deleted_with_the_head_rewound_are_caught_by_an_earlier_head(
    trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(trail, 5)
    code, out = _verify_cli(database_url, capsys)
    head = out.split("head: ")[1].split()[0]
    with trail.engines.reader.connect() as connection:
        fourth = connection.execute(select(AUDIT.c.hash).where(AUDIT.c.id == 4)).scalar_one()
    _sql(trail, "DELETE FROM audit_event WHERE id = 5")
    _sql(trail, f"UPDATE audit_chain SET last_id = 4, last_hash = '{fourth}'")
    assert trail.verify().intact  # the database alone cannot tell
    code, out = _verify_cli(database_url, capsys, "--expect", head)
    assert code == 1 and "the first bad record is 5" in out


def test_an_inserted_record_is_named(trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _write(trail, 5)
    forged = {**asdict(entry(99)), "id": 3, "hash": "0" * 64}
    _sql(trail, "DELETE FROM audit_event WHERE id = 3")
    with trail.engines.writer.begin() as connection:
        connection.execute(insert(AUDIT), forged)  # in place of a deleted one
        connection.execute(insert(AUDIT), {**asdict(entry(98)), "id": 6, "hash": None})  # after the head
    report = trail.verify()
    assert [p.record_id for p in report.problems] == [3, 4, 6]  # 4 was chained to the true 3
    code, out = _verify_cli(database_url, capsys)
    assert code == 1 and "the first bad record is 3" in out
    assert "record 6: has no hash, yet is newer than the chain's start: inserted" in out


def test_records_written_before_the_chain_existed_are_reported_unchained_not_tampered(
    settings: Settings, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # the trail as an earlier fhir-bridge made it: no hash column, no chain head
    old = Table(
        "audit_event",
        MetaData(),
        *(Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in AUDIT.columns),
    )
    old._columns.remove(old.c.hash)  # type: ignore[attr-defined]
    with Services.from_settings(settings) as first:
        engines = first.engines  # the store's database; the trail's beside it on SQLite
        from fhir_bridge.store.database import engines_beside

        audit_engines = engines_beside(settings.database_url, engines, "audit")
        old.create(audit_engines.writer)
        with audit_engines.writer.begin() as connection:
            connection.execute(insert(old), [asdict(entry(n)) for n in range(3)])
        if audit_engines is not engines:
            audit_engines.dispose()
    with Services.from_settings(settings) as upgraded:
        _write(upgraded.audit_log, 2)
        report = upgraded.audit_log.verify()
        assert report.intact and report.unchained == 3 and report.chained == 2 and report.first_chained == 4
        _sql(upgraded.audit_log, "UPDATE audit_event SET detail = 'edited' WHERE id = 2")  # unchained: not checked
        assert upgraded.audit_log.verify().intact
    code, out = _verify_cli(database_url, capsys)
    assert code == 0 and "3 records were written before the chain existed: unchained, not checked" in out


def test_purge_deletes_old_records_and_the_chain_verifies_from_its_checkpoint(
    trail: AuditLog, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(trail, 4, recorded=now_us() - 40 * DAY_US)
    _write(trail, 3, recorded=now_us() - 10 * DAY_US)
    _write(trail, 2)
    monkeypatch.setenv("FHIR_BRIDGE_AUDIT_RETENTION_DAYS", "30")
    assert cli.main(["audit", "purge", "--database-url", database_url]) == 0
    assert "deleted 4 audit records older than 30 days" in capsys.readouterr().out
    assert _ids(trail) == [5, 6, 7, 8, 9, 10]
    report = trail.verify()
    assert report.intact and report.purged_through == 4 and report.first_chained == 5
    row = trail.read(10)
    assert row is not None and (row.method, row.path, row.entity_type) == ("CLI", "audit purge", "AuditEvent")
    assert row.detail.startswith("deleted 4 records older than")
    # a second purge takes the first purge's record with it: the new checkpoint carries the chain on
    assert cli.main(["audit", "purge", "--older-than-days", "5", "--database-url", database_url]) == 0
    assert _ids(trail) == [8, 9, 10, 11]
    assert trail.verify().intact and trail.verify().purged_through == 7
    # and an intruder's deletion of the oldest record left is still caught
    _sql(trail, "DELETE FROM audit_event WHERE id = 8")
    code, out = _verify_cli(database_url, capsys)
    assert code == 1 and "the first bad record is 8: is missing: deleted" in out
    # a broken chain is not purged: that would delete the evidence
    assert cli.main(["audit", "purge", "--older-than-days", "1", "--database-url", database_url]) == 1
    assert _ids(trail) == [9, 10, 11]


def test_purge_without_a_retention_is_refused(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "purge", "--database-url", database_url]) == 2
    assert "FHIR_BRIDGE_AUDIT_RETENTION_DAYS" in capsys.readouterr().err


def test_a_worker_with_another_key_refuses_to_write_and_to_verify(
    trail: AuditLog, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(trail, 2)
    with pytest.raises(ConfigurationError, match="audit trail is chained under key id"):
        AuditLog(trail.engines, ChainKey(b"another-site-secret-0123456789"))  # a worker starting with it
    _sql(trail, f"UPDATE audit_chain SET key_id = '{ChainKey(b'another-site-secret-0123456789').id}'")
    with pytest.raises(ChainKeyMismatch):  # the key changed under a running worker: it stops writing
        trail.record(entry(9))
    _sql(trail, f"UPDATE audit_chain SET key_id = '{trail.key.id}'")
    assert trail.verify().intact and trail.verify().chained == 2
    key = tmp_path / "other.key"
    key.write_text("a-different-site-secret-0123456789")
    code = cli.main(["audit", "verify", "--database-url", database_url, "--pseudonym-key-file", str(key)])
    assert code == 2 and "audit trail is chained under key id" in capsys.readouterr().err


def _batches_written() -> float:
    """Transactions the trail's writers have written, from the metric /metrics publishes."""
    return REGISTRY.get_sample_value("fhir_bridge_audit_write_seconds_count") or 0.0


def test_waiting_requests_share_one_commit_and_none_is_answered_before_it(trail: AuditLog) -> None:
    before = _batches_written()
    with trail.engines.writer.connect() as blocker:
        blocker.begin()  # holds the chain's head (SQLite: the file's write lock), as a busy writer elsewhere would
        blocker.execute(select(AUDIT_CHAIN).with_for_update())
        first = trail.submit([entry(0)])
        waiting: list[Future[None]] = [trail.submit([entry(n)]) for n in range(1, 21)]
        waiting.append(trail.submit([entry(21), entry(22)]))  # a Bundle's records: one unit
        time.sleep(0.2)
        assert not first.done() and not any(future.done() for future in waiting)
        blocker.rollback()
    first.result(timeout=60)
    for future in waiting:
        future.result(timeout=60)
    assert _batches_written() - before <= 2  # the first request's, then all that waited behind it
    assert _ids(trail) == list(range(1, 24))
    assert trail.verify().intact


def test_records_announced_by_requests_in_progress_join_one_commit() -> None:
    """As under many clients: requests announce their records when they start, and the writer waits
    for those still to come before it commits (``audit.commit``), instead of a commit per request."""
    batches: list[list[int]] = []
    writer = GroupCommit(batches.append, delay=3600)  # only what is announced is waited for
    for _ in range(3):
        writer.expect()
    futures = []
    for n in range(3):
        futures.append(writer.submit([n], announced=True))
        time.sleep(0.01)  # each request finishes a while after the one before
    for future in futures:
        future.result(timeout=60)
    alone = writer.submit([3])  # nothing announced: written at once, not held for the delay
    alone.result(timeout=60)
    writer.close()
    assert batches == [[0, 1, 2], [3]] and writer.expected == 0


def test_a_withdrawn_announcement_does_not_hold_back_the_records_of_others() -> None:
    batches: list[list[int]] = []
    writer = GroupCommit(batches.append, delay=3600)  # it would wait an hour for the announced record
    writer.expect()
    writer.expect()
    written = writer.submit([1], announced=True)
    writer.withdraw()  # the other request failed before its record: the writer stops waiting for it
    written.result(timeout=60)
    writer.close()
    assert batches == [[1]] and writer.expected == 0


def test_a_record_that_cannot_be_written_fails_its_own_request_only(trail: AuditLog, database_url: str) -> None:
    _refuse_path(trail, "/refused")
    with trail.engines.writer.connect() as blocker:
        blocker.begin()
        blocker.execute(select(AUDIT_CHAIN).with_for_update())
        futures = [trail.submit([entry(n, path="/refused" if n == 1 else None)]) for n in range(3)]
        blocker.rollback()
    assert futures[0].result(timeout=60) is None and futures[2].result(timeout=60) is None
    with pytest.raises(Exception, match="refused"):
        futures[1].result(timeout=60)
    assert len(_ids(trail)) == 2 and trail.verify().intact


def test_a_request_whose_record_cannot_be_written_fails(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    trail = app.state.services.audit_log
    _refuse_path(trail, "/fhir/Patient/refused")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/fhir/Patient/refused").status_code == 500  # 404 if it went unrecorded
        assert client.get("/fhir/Patient/other").status_code == 404
    assert trail.announced == 0  # neither request left the writer waiting for a record
    app.state.services.close()
    assert [trail.read(i).path for i in _ids(trail)] == ["/fhir/Patient/other"]


def _refuse_path(trail: AuditLog, path: str) -> None:
    """A trigger that makes the database refuse the records of one path (a full disk, for one request)."""
    if trail.engines.dialect == "sqlite":
        _sql(
            trail,
            f"CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event WHEN NEW.path = '{path}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        return
    _sql(
        trail,
        "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
        f"IF NEW.path = '{path}' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    )
    _sql(trail, "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION refuse_audit()")


def test_concurrent_writers_keep_one_linear_chain(trail: AuditLog, services: Services) -> None:
    second = AuditLog(trail.engines, services.audit_chain_key)  # another worker's writer on the same trail

    def write(log: AuditLog, worker: int) -> None:
        for n in range(25):
            log.record(entry(worker * 100 + n))

    threads = [threading.Thread(target=write, args=(trail if w % 2 else second, w)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    second.close()
    assert _ids(trail) == list(range(1, 201))
    report = trail.verify()
    assert report.intact and report.chained == 200


WRITER = textwrap.dedent(
    """
    import sys
    from fhir_bridge import Settings
    from fhir_bridge.services import Services
    from tests.test_audit_chain import entry

    with Services.from_settings(Settings(database_url=sys.argv[1])) as services:
        for n in range(int(sys.argv[2])):
            services.audit_log.record(entry(n))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # workers on several hosts: PostgreSQL
def test_two_processes_writing_at_once_keep_one_linear_chain(trail: AuditLog, database_url: str) -> None:
    root = Path(__file__).parent.parent
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, database_url, "150"], cwd=root, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    _write(trail, 100)
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    assert _ids(trail) == list(range(1, 401))
    assert trail.verify().intact


# SQLite: records committed on the event loop (audit.commit.LoopCommit) --------------------------------
on_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _record_all(trail: AuditLog, groups: list[list[AuditEntry]]) -> list[BaseException | None]:
    async def record() -> list[BaseException | None]:
        return await asyncio.gather(*(trail.record_async(group) for group in groups), return_exceptions=True)

    return asyncio.run(record())


@on_sqlite
def test_records_of_requests_answered_in_one_turn_of_the_loop_share_one_commit(trail: AuditLog) -> None:
    before, threads = _batches_written(), set(threading.enumerate())
    assert _record_all(trail, [[entry(n)] for n in range(20)] + [[entry(20), entry(21)]]) == [None] * 21
    assert _batches_written() - before == 1
    assert not set(threading.enumerate()) - threads  # committed on the loop: no writer thread was needed
    assert _ids(trail) == list(range(1, 23)) and trail.verify().intact


@on_sqlite
def test_the_loop_does_not_wait_for_a_lock_another_process_holds(trail: AuditLog) -> None:
    """While another writer holds the trail's file, the loop keeps serving: the records wait on the
    writer thread, and are written, in one chain, once the lock is free."""

    async def scenario(blocker: Connection) -> int:
        ticks = 0
        recording = asyncio.gather(*(trail.record_async([entry(n)]) for n in range(5)))
        for _ in range(20):  # the loop is free: other requests would be served meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not recording.done()  # none answered before its record is durable
        blocker.rollback()
        await recording
        return ticks

    with trail.engines.writer.connect() as blocker:
        blocker.begin()
        blocker.execute(select(AUDIT_CHAIN).with_for_update())
        assert asyncio.run(scenario(blocker)) == 20
    assert _ids(trail) == list(range(1, 6)) and trail.verify().intact


@on_sqlite
def test_a_record_the_loop_cannot_write_fails_its_own_request_only(trail: AuditLog) -> None:
    _refuse_path(trail, "/refused")
    results = _record_all(trail, [[entry(n, path="/refused" if n == 1 else None)] for n in range(3)])
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception) and "refused" in str(results[1])
    assert len(_ids(trail)) == 2 and trail.verify().intact


@on_sqlite
def test_a_record_waiting_for_its_turn_is_written_when_the_client_goes_away(trail: AuditLog) -> None:
    async def scenario() -> None:
        trail.expect()  # another request in progress: the loop waits for its record before it commits
        waiting = asyncio.create_task(trail.record_async([entry(1)]))
        await asyncio.sleep(0)
        waiting.cancel()  # the client went away while its record waited for the commit
        await asyncio.sleep(0.1)
        trail.withdraw()

    asyncio.run(scenario())
    assert _ids(trail) == [1] and trail.verify().intact


@on_sqlite
def test_commits_on_the_loop_are_checkpointed_by_a_thread_so_the_wal_stays_bounded(
    trail: AuditLog, database_url: str
) -> None:
    commits = 8 * CHECKPOINT_EVERY

    async def one_by_one() -> None:
        for n in range(commits):
            await trail.record_async([entry(n)])

    asyncio.run(one_by_one())
    wal = Path(trail.engines.writer.url.database + "-wal")  # type: ignore[operator]
    per_commit = 5 * 4096  # the record, its three index entries and the head: a page each
    # Unchecked, the WAL would hold every commit (~34 MB); checkpointed, it is rewound after each
    # checkpoint, and holds what was committed while the last one waited for its thread (~5 MB here,
    # 8.8 MB once on a loaded CI machine)
    assert wal.stat().st_size < commits * per_commit / 2
    assert len(_ids(trail)) == commits and trail.verify().intact
