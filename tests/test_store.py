"""The store's guarantees: commit order, atomicity, schema set-up, index extraction from the spec."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, inspect, select

from fhir_bridge import Settings, create_app
from fhir_bridge.bulk.jobs import JobStore
from fhir_bridge.errors import FhirError
from fhir_bridge.security.clients import ClientRegistry
from fhir_bridge.services import Services
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.store import Store
from fhir_bridge.store.tables import INDEX_TABLES, RESOURCE, VERSION


def test_every_version_gets_a_sequence_number_in_commit_order(client):
    for _ in range(3):
        created = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
        client.put(f"/fhir/Patient/{created['id']}", json=dict(created, active=True))
    store: Store = client.app.state.services.store
    versions = store.history(count=100)
    seqs = [v.seq for v in versions]
    assert seqs == sorted(seqs, reverse=True)
    assert len(set(seqs)) == 6
    times = [v.last_updated for v in versions]
    assert times == sorted(times, reverse=True)  # lastUpdated never goes back in commit order


def test_a_failed_write_session_leaves_no_trace(app):
    store: Store = app.state.services.store
    with pytest.raises(FhirError), store.write() as session:
        session.put({"resourceType": "Patient", "id": "half", "gender": "male"}, "PUT")
        session.put(
            {
                "resourceType": "ImagingStudy",
                "id": "s",
                "status": "available",
                "subject": {"reference": "Patient/absent"},
            },
            "PUT",
        )
    with store.engines.reader.connect() as connection:
        assert connection.execute(select(func.count()).select_from(RESOURCE)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(VERSION)).scalar_one() == 0
        for table in INDEX_TABLES.values():
            assert connection.execute(select(func.count()).select_from(table)).scalar_one() == 0
    with store.write() as session:
        assert session.put({"resourceType": "Patient", "id": "whole"}, "PUT").seq == 1  # the clock did not move


def test_index_rows_are_valid_from_their_version_until_the_next(app):
    store: Store = app.state.services.store
    with store.write() as session:
        first = session.put(
            {"resourceType": "Patient", "id": "p", "gender": "male", "name": [{"family": "Old"}]}, "PUT"
        )
    with store.write() as session:
        second = session.put({"resourceType": "Patient", "id": "p", "gender": "female"}, "PUT")
    token, string = INDEX_TABLES["token"], INDEX_TABLES["string"]
    with store.engines.reader.connect() as connection:
        genders = connection.execute(
            select(token.c.code, token.c.seq_from, token.c.seq_to)
            .where(token.c.param == "gender")
            .order_by(token.c.seq_from)
        ).all()
        current_strings = connection.execute(select(string.c.value).where(string.c.seq_to.is_(None))).scalars().all()
        superseded = connection.execute(select(VERSION.c.superseded).order_by(VERSION.c.seq)).scalars().all()
    assert [tuple(g) for g in genders] == [("male", first.seq, second.seq), ("female", second.seq, None)]
    assert "old" not in current_strings
    assert superseded == [second.seq, None]


def test_schema_set_up_is_idempotent_and_keeps_data(database_url):
    first = create_app(Settings(database_url=database_url))
    from fastapi.testclient import TestClient

    with TestClient(first) as http:
        created = http.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
    first.state.services.close()
    second = create_app(Settings(database_url=database_url))
    with TestClient(second) as http:
        assert http.get(f"/fhir/Patient/{created['id']}").status_code == 200
    second.state.services.close()


def test_tables_of_packages_are_created_with_the_store_by_workers_starting_together(database_url):
    """bulk and security declare their tables through store.schema; audit keeps its own (own file on SQLite)."""
    workers = [Services.from_settings(Settings(database_url=database_url)) for _ in range(4)]
    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(lambda services: services.engines, workers))  # each prepares the schema, all at once
    with workers[0].engines.reader.connect() as connection:
        tables = set(inspect(connection).get_table_names())
    assert {"bulk_job", "bulk_file", "bulk_chunk", "bulk_job_client", "auth_client", "auth_assertion"} <= tables
    assert {"resource", "resource_version", *(table.name for table in INDEX_TABLES.values())} <= tables
    with workers[0].audit_log.engines.reader.connect() as connection:
        assert "audit_event" in inspect(connection).get_table_names()
    prepare_schema(workers[0].engines)  # and again, later: nothing changes, nothing fails
    for services in workers:
        services.close()


def test_a_store_prepared_by_a_process_that_imported_only_the_store_has_every_table(database_url):
    """A process that imported only the store (a loader, an older tool) prepared the database: the
    migration revisions create bulk's and security's tables too, whose modules it never imported."""
    prepare_alone = (
        "import sys; from fhir_bridge.store.database import create_engines; "
        "from fhir_bridge.store.migration import prepare_schema; prepare_schema(create_engines(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", prepare_alone, database_url], check=True, timeout=120)
    engines = create_engines(database_url)
    with engines.reader.connect() as connection:
        assert {"bulk_job", "bulk_chunk", "auth_client", "auth_assertion"} <= set(inspect(connection).get_table_names())
    assert JobStore(engines).get("no-such-job") is None
    assert ClientRegistry(engines).all() == []
    engines.dispose()


def test_each_test_gets_its_own_database(database_url, tmp_path):
    engines = create_engines(database_url)
    prepare_schema(engines)
    with engines.reader.connect() as connection:
        if engines.dialect == "postgresql":
            assert connection.exec_driver_sql("SELECT current_schema()").scalar_one().startswith("t_")
        else:
            assert (tmp_path / "store.db").exists()
    engines.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # PostgreSQL's plan cache
def test_postgresql_plans_every_statement_with_its_values(database_url):
    """A search's plan depends on its values (a month's index range, a page): PostgreSQL must not
    switch a statement that psycopg prepared after a few runs to one plan for any values."""
    engines = create_engines(database_url)
    try:
        with engines.reader.connect() as first, engines.writer.connect() as second:  # two of the pool's
            for connection in (first, second):
                connection.rollback()  # also after a transaction was rolled back
                assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    finally:
        engines.dispose()
