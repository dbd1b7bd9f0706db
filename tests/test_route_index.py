"""The route index picks, for every request, the route Starlette's scan of all routes would pick."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Match

from fhir_bridge import Settings, create_app
from fhir_bridge.api.routing import CHOSEN, RouteIndex
from tests.conftest import TEST_PSEUDONYM_KEY

# Values a path parameter is given: names of other routes' literal segments, FHIR types, ids, nothing.
SAMPLES = ("Patient", "AuditEvent", "$export", "_history", "metadata", "abc-1", "")
METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "BREW")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    database = tmp_path_factory.mktemp("index") / "store.db"
    application = create_app(
        Settings(database_url=f"sqlite:///{database}", pseudonym_key=TEST_PSEUDONYM_KEY, pseudonym_key_file=None)
    )
    yield application
    application.state.services.close()


def _scope(method: str, path: str, root_path: str = "") -> dict:
    return {"type": "http", "method": method, "path": root_path + path, "root_path": root_path, "headers": []}


def _scanned(routes: list[BaseRoute], scope: dict) -> BaseRoute | None:
    """The route Starlette's router takes: the first full match, in order."""
    for route in routes:
        if route.matches(scope)[0] is Match.FULL:
            return route
    return None


def _paths(app: FastAPI) -> Iterator[str]:
    """Every route's path with its parameters filled from SAMPLES, plus paths that match nothing."""
    for route in app.router.routes[1:]:
        template = getattr(route, "path_format", "/")
        names = re.findall(r"{[^}]+}", template)
        for values in itertools.product(SAMPLES, repeat=len(names)):
            path = template
            for name, value in zip(names, values, strict=True):
                path = path.replace(name, value, 1)
            yield path
            yield path + "/"
    yield from ("", "/", "//", "/fhir//Patient", "/nothing/here", "/fhir/Patient/1/_history/2/$meta/x/y/z")


def test_every_request_goes_to_the_route_the_full_scan_picks(app: FastAPI) -> None:
    index, routes = app.router.routes[0], app.router.routes[1:]
    assert isinstance(index, RouteIndex)
    checked = 0
    for path in set(_paths(app)):
        for method, root in itertools.product(METHODS, ("", "/mounted")):
            scope = _scope(method, path, root)
            expected = _scanned(routes, scope)
            match, child = index.matches(scope)
            assert (child.get(CHOSEN) if match is Match.FULL else None) is expected, (method, root, path)
            checked += 1
    assert checked > 5_000


def test_the_index_answers_nothing_but_http(app: FastAPI) -> None:
    assert app.router.routes[0].matches({"type": "websocket", "path": "/fhir/metadata"})[0] is Match.NONE


def test_what_the_index_does_not_take_is_answered_as_before(app: FastAPI) -> None:
    """405 for a known path with another method, 404 for an unknown one, a read through the index."""
    with TestClient(app) as client:
        assert client.post("/catalogue").status_code == 405
        missing = client.get("/nothing/here")
        assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
        assert client.get("/fhir/Patient/unknown-1").json()["issue"][0]["code"] == "not-found"
        created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
        read = client.get(created.headers["location"].split("/_history")[0])
        assert read.status_code == 200 and read.json()["gender"] == "female"


def test_routes_are_still_found_by_name(app: FastAPI) -> None:
    assert app.url_path_for("ui_login") == "/ui/login"
