"""Where a type search runs (``api.placement``): on the event loop on SQLite, on a worker thread once
searches of its shape were seen to hold the loop, and always on a thread on PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from fhir_bridge.api.placement import REMEMBERED_SHAPES, SLOW_ON_THE_LOOP_S, SLOW_RUNS, SearchPlacement


def _where(placement: SearchPlacement, parameters: list[tuple[str, str]], pause_s: float = 0.0) -> str:
    """Run one search through ``placement`` and say which thread ran it."""

    def search(resource_type: str, criteria: list[tuple[str, str]]) -> str:
        time.sleep(pause_s)
        return threading.current_thread().name

    async def one() -> tuple[str, str]:
        return await placement.run(search, "Patient", parameters), threading.current_thread().name

    ran, loop = asyncio.run(one())
    return "loop" if ran == loop else "thread"


def test_a_search_runs_on_the_event_loop_until_its_shape_was_slow_there_twice() -> None:
    placement = SearchPlacement(on_the_loop=True)
    slow = SLOW_ON_THE_LOOP_S * 1.5
    assert _where(placement, [("name", "smith")]) == "loop"
    for _ in range(SLOW_RUNS):
        assert _where(placement, [("name", "jones")], slow) == "loop"
    # the same shape with other values, and its parameters in another order, goes to a thread now
    assert _where(placement, [("name", "lee")]) == "thread"
    assert _where(placement, [("_count", "5"), ("name", "x")]) == "loop"  # another shape
    assert _where(placement, [("identifier", "a|1")], slow) == "loop"  # one slow run: maybe only cold
    assert _where(placement, [("identifier", "a|2")]) == "loop"


def test_the_slow_shapes_remembered_are_bounded_and_the_oldest_are_forgotten() -> None:
    placement = SearchPlacement(on_the_loop=True)
    for number in range(REMEMBERED_SHAPES + 10):
        for _ in range(SLOW_RUNS):
            placement.ran(SearchPlacement.shape("Patient", [(f"p{number}", "")]), SLOW_ON_THE_LOOP_S)
    assert not placement.runs_on_the_loop(SearchPlacement.shape("Patient", [(f"p{REMEMBERED_SHAPES + 9}", "")]))
    assert placement.runs_on_the_loop(SearchPlacement.shape("Patient", [("p0", "")]))  # forgotten
    assert len(placement._slow_runs) == REMEMBERED_SHAPES


def test_searches_of_a_store_whose_reads_can_wait_always_run_on_a_thread() -> None:
    assert _where(SearchPlacement(on_the_loop=False), [("name", "smith")]) == "thread"


def test_the_app_places_searches_by_its_store(client: TestClient, database_url: str) -> None:
    placement = client.app.state.search_placement  # type: ignore[attr-defined]
    assert placement.on_the_loop is database_url.startswith("sqlite")
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Placed"}]})
    assert created.status_code == 201
    found = client.get("/fhir/Patient", params={"family": "Placed"})
    assert found.status_code == 200 and len(found.json()["entry"]) == 1
    missing = client.get("/fhir/Patient", params={"bogus": "1"}, headers={"Prefer": "handling=strict"})
    assert missing.status_code == 400  # errors of a search on the loop answer as on a thread


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_slow_shape_is_searched_on_a_thread_through_the_app(client: TestClient) -> None:
    placement = client.app.state.search_placement  # type: ignore[attr-defined]
    shape = SearchPlacement.shape("Patient", [("family", "")])
    for _ in range(SLOW_RUNS):
        placement.ran(shape, SLOW_ON_THE_LOOP_S)
    assert not placement.runs_on_the_loop(shape)
    assert "entry" not in client.get("/fhir/Patient", params={"family": "Nobody"}).json()
