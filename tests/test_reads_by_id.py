"""Reads by id (``Store.read``, ``Store.vread``): one statement on the pool's driver connection."""

from __future__ import annotations

import sqlite3

import pytest

from fhir_bridge.services import Services
from fhir_bridge.settings import Settings
from fhir_bridge.store.database import driver_connection


def test_reads_by_id_find_the_current_and_each_version(settings: Settings) -> None:
    with Services.from_settings(settings) as services:
        created = services.interactions.create("Patient", {"resourceType": "Patient", "gender": "female"}).stored
        assert created is not None
        changed = {"resourceType": "Patient", "id": created.res_id, "gender": "male"}
        services.interactions.update("Patient", created.res_id, changed, None)
        current = services.store.read("Patient", created.res_id)
        first = services.store.vread("Patient", created.res_id, 1)
        assert current is not None and current.version == 2 and '"male"' in current.content
        assert first is not None and first.version == 1 and '"female"' in first.content
        assert services.store.read("Patient", "unknown") is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_read_by_id_in_autocommit_leaves_its_pooled_connection_transactional(settings: Settings) -> None:
    """On PostgreSQL a read by id runs without BEGIN/ROLLBACK (autocommit); the connection must go
    back to the pool transactional, or every later write transaction would commit statement by statement."""
    with Services.from_settings(settings) as services:
        created = services.interactions.create("Patient", {"resourceType": "Patient"}).stored
        assert created is not None
        for _ in range(20):
            assert services.store.read("Patient", created.res_id) is not None
        engine = services.store.engines.reader
        held = [engine.raw_connection() for _ in range(engine.pool.size())]  # type: ignore[attr-defined]
        try:
            assert [raw.driver_connection.autocommit for raw in held] == [False] * len(held)  # type: ignore[union-attr]
        finally:
            for raw in held:
                raw.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reads_by_id_on_sqlite_share_a_spare_connection_that_sees_every_commit(settings: Settings) -> None:
    """On SQLite a read by id runs on a connection kept out of the pool: it never holds a snapshot
    between reads (each sees the last commit), and it is closed when the engines are disposed."""
    with Services.from_settings(settings) as services:
        created = services.interactions.create("Patient", {"resourceType": "Patient", "gender": "female"}).stored
        assert created is not None
        reader = services.store.engines.reader
        for gender in ("male", "other", "unknown"):
            changed = {"resourceType": "Patient", "id": created.res_id, "gender": gender}
            services.interactions.update("Patient", created.res_id, changed, None)
            current = services.store.read("Patient", created.res_id)
            assert current is not None and f'"{gender}"' in current.content
        pool = reader.pool
        assert pool.checkedout() == 1  # type: ignore[attr-defined]  # one spare served every read
        with pytest.raises(Exception, match="no such table"), driver_connection(reader) as driver:
            driver.execute("SELECT 1 FROM no_such_table")
        assert pool.checkedout() == 0  # type: ignore[attr-defined]  # a failed statement's connection is not kept
        with driver_connection(reader) as driver:
            assert driver.execute("SELECT count(*) FROM resource").fetchone() == (1,)
        assert pool.checkedout() == 1  # type: ignore[attr-defined]  # kept as the spare
        services.store.engines.dispose()
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):  # the spare was closed with its pool
            driver.execute("SELECT 1")
