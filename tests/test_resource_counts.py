"""The per-type counts of current resources the write path keeps (``resource_count``), which answer
``Type?_summary=count`` without counting: exact after creates, updates, deletes, re-creations,
transactions (one that fails leaves them as they were) and erasure; a count pinned to an older
commit is still counted as of that commit."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from fhir_bridge.search.query import SearchQuery
from fhir_bridge.search.runner import count_matches
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.tables import RESOURCE_COUNT
from tests.store_consistency import assert_store_consistent


def _kept(database_url: str) -> dict[str, int]:
    engines = create_engines(database_url)
    with engines.reader.connect() as connection:
        rows = connection.execute(select(RESOURCE_COUNT.c.res_type, RESOURCE_COUNT.c.current)).all()
    engines.dispose()
    return {res_type: n for res_type, n in rows if n}


def _count(client: TestClient, res_type: str, **criteria: str) -> int:
    response = client.get(f"/fhir/{res_type}", params={**criteria, "_summary": "count"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def _patient(pid: str, **more: object) -> dict:
    return {"resourceType": "Patient", "id": pid, **more}


def _entry(method: str, url: str, resource: dict | None = None) -> dict:
    entry: dict = {"request": {"method": method, "url": url}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def test_the_kept_counts_follow_creates_updates_deletes_and_recreations(client, database_url):
    for i in range(3):
        assert client.put(f"/fhir/Patient/p{i}", json=_patient(f"p{i}")).status_code == 201
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
    assert _count(client, "Patient") == 4
    assert client.put("/fhir/Patient/p0", json=_patient("p0", gender="female")).status_code == 200  # an update
    assert _count(client, "Patient") == 4
    assert client.delete("/fhir/Patient/p1").status_code in (200, 204)
    assert client.delete("/fhir/Patient/p1").status_code in (200, 204)  # deleting it again changes nothing
    assert _count(client, "Patient") == 3
    assert client.put("/fhir/Patient/p1", json=_patient("p1")).status_code == 201  # created again
    assert _count(client, "Patient") == 4
    assert _count(client, "Observation") == 0
    assert _count(client, "Patient", gender="female") == 1  # with a criterion: counted
    assert _kept(database_url) == {"Patient": 4}
    assert_store_consistent(database_url)


def test_a_transaction_counts_once_and_a_failed_one_not_at_all(client, database_url):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry("PUT", "Patient/t1", _patient("t1")),
            _entry("PUT", "Patient/t2", _patient("t2")),
            _entry("PUT", "Patient/t3", _patient("t3")),
            _entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 200
    assert (_count(client, "Patient"), _count(client, "Observation")) == (3, 1)
    mixed = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_entry("DELETE", "Patient/t1"), _entry("PUT", "Patient/t2", _patient("t2", gender="male"))],
    }
    assert client.post("/fhir", json=mixed).status_code == 200
    assert _count(client, "Patient") == 2
    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry("PUT", "Patient/t4", _patient("t4")),
            _entry("DELETE", "Patient/t2"),
            # a dangling reference: the whole transaction is refused
            _entry(
                "PUT",
                "Observation/o9",
                {
                    "resourceType": "Observation",
                    "id": "o9",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/nobody"},
                },
            ),
        ],
    }
    assert client.post("/fhir", json=failing).status_code >= 400
    assert (_count(client, "Patient"), _count(client, "Observation")) == (2, 1)
    assert _kept(database_url) == {"Patient": 2, "Observation": 1}
    assert_store_consistent(database_url)


def test_erasure_takes_the_erased_resources_out_of_the_counts(app, client, database_url):
    for pid in ("e1", "e2", "e3"):
        assert client.put(f"/fhir/Patient/{pid}", json=_patient(pid)).status_code == 201
    assert client.delete("/fhir/Patient/e3").status_code in (200, 204)  # deleted: no longer counted
    erased = app.state.services.store.erase([("Patient", "e1"), ("Patient", "e3")])
    assert erased.resources == 2
    assert _count(client, "Patient") == 1
    assert _kept(database_url) == {"Patient": 1}
    assert_store_consistent(database_url)


def test_a_count_pinned_to_an_older_commit_is_counted_as_of_it(app, client):
    store = app.state.services.store
    assert client.put("/fhir/Patient/a", json=_patient("a")).status_code == 201
    then = store.last_seq()
    assert client.put("/fhir/Patient/b", json=_patient("b")).status_code == 201
    assert client.delete("/fhir/Patient/a").status_code in (200, 204)
    assert client.put("/fhir/Patient/c", json=_patient("c")).status_code == 201
    assert count_matches(store, SearchQuery("Patient", at_seq=then)) == 1
    newest = SearchQuery("Patient")
    assert count_matches(store, newest) == 2
    assert newest.at_seq == store.last_seq()  # the count says which commit it is of


def test_the_upgrade_counts_the_resources_of_a_store_made_before_the_counts(client, database_url):
    for pid in ("u1", "u2"):
        assert client.put(f"/fhir/Patient/{pid}", json=_patient(pid)).status_code == 201
    assert client.delete("/fhir/Patient/u2").status_code in (200, 204)
    engines = create_engines(database_url)
    with engines.writer.begin() as connection:  # as a store at revision r0002 was: no counts kept
        connection.execute(RESOURCE_COUNT.delete())
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'r0002'")
    prepare_schema(engines, upgrade=True)
    engines.dispose()
    assert _kept(database_url) == {"Patient": 1}
    assert _count(client, "Patient") == 1


def test_total_estimate_is_the_planners_estimate_on_postgresql_and_exact_elsewhere(client, database_url, app):
    for i in range(30):
        gender = "female" if i % 3 == 0 else "male"
        assert client.put(f"/fhir/Patient/g{i}", json=_patient(f"g{i}", gender=gender)).status_code == 201
    app.state.services.store.refresh_statistics()
    exact = client.get("/fhir/Patient", params={"gender": "female", "_summary": "count"}).json()["total"]
    accurate = client.get("/fhir/Patient", params={"gender": "female", "_total": "accurate"}).json()
    estimated = client.get("/fhir/Patient", params={"gender": "female", "_total": "estimate"}).json()
    assert exact == accurate["total"] == 10 == len(accurate["entry"])
    assert len(estimated["entry"]) == 10  # the page itself is exact
    if database_url.startswith("sqlite"):
        assert estimated["total"] == 10
    else:
        assert isinstance(estimated["total"], int) and 1 <= estimated["total"] <= 30
    assert "total" not in client.get("/fhir/Patient", params={"gender": "female", "_total": "none"}).json()
