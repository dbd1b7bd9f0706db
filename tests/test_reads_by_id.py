"""Reads by id (``Store.read``, ``Store.vread``): one statement on the pool's driver connection."""

from __future__ import annotations

import pytest

from fhir_bridge.services import Services
from fhir_bridge.settings import Settings


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
