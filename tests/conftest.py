"""Shared fixtures: every test that takes ``database_url`` runs on SQLite and on PostgreSQL.

PostgreSQL tests use a fresh schema of the database named by ``FHIR_BRIDGE_TEST_POSTGRES_URL``
(default: the local server, database ``test``). When that server cannot be reached they are
skipped, except under CI (``CI=true``) or ``FHIR_BRIDGE_REQUIRE_POSTGRES=1``, where they fail.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from fhir_bridge import Settings, create_app
from fhir_bridge.search.index import index_entries
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import prepare_schema
from fhir_bridge.store.store import Store
from tests.fhir_json import check_response

POSTGRES_URL = os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# The test site's pseudonym secret. The service refuses to start without one (pseudonymisation is on by
# default), so it is also put in the environment: apps built with Settings(...) in tests, and the server
# processes tests start, run with it. Tests of the refusal remove it explicitly.
TEST_PSEUDONYM_KEY = "fhir-bridge-test-site-secret-0123456789abcdef"
if not {"FHIR_BRIDGE_PSEUDONYM_KEY", "FHIR_BRIDGE_PSEUDONYM_KEY_FILE"} & set(os.environ):
    os.environ["FHIR_BRIDGE_PSEUDONYM_KEY"] = TEST_PSEUDONYM_KEY
# Access control is on by default; tests of other features run the service without it, like the
# README's loopback quick start. Tests of access control build their apps with auth="smart".
os.environ.setdefault("FHIR_BRIDGE_AUTH", "none")
# The token signing keys live in a file outside the database: one for the test run, not in the working copy.
os.environ.setdefault("FHIR_BRIDGE_TOKEN_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="fhir-bridge-"), "keys.json"))
REQUIRE_POSTGRES = os.environ.get("CI") == "true" or os.environ.get("FHIR_BRIDGE_REQUIRE_POSTGRES") == "1"
EXAMPLES = Path(__file__).parent / "data" / "examples"


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unreachable at {POSTGRES_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in server else "?"
    yield f"{server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store on ``database_url`` with the search index and no reference checks, without the app."""
    engines = create_engines(database_url)
    prepare_schema(engines)
    yield Store(engines, indexer=index_entries, enforce_references=False)
    engines.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, pseudonym_key_file=None)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.services.close()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app in-process; every FHIR JSON response is checked for empty arrays, objects, strings (json.html)."""
    with TestClient(app, base_url="http://testserver") as test_client:
        test_client.event_hooks = {"request": [], "response": [check_response]}
        yield test_client


def free_port() -> int:
    """A free TCP port on loopback, for servers that tests start.

    The port is free when this returns, and the server binds it a moment (up to seconds, for a
    subprocess) later. Under pytest-xdist each worker takes ports of its own share of the range
    (``port // 2 % workers``; the kernel hands out odd ports here), so that two workers never pick
    the same port for servers starting at the same time.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")) % workers
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port // 2 % workers == worker:
            return port


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """``app`` served by uvicorn in a thread on a free loopback port; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a loopback port, for real HTTP clients; yields the FHIR base URL."""
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/fhir"


def example(name: str) -> dict:
    """A resource from the FHIR R4 specification's examples (tests/data/examples, CC0)."""
    import json

    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


# Access control ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def client_keys() -> dict:
    """Key pairs of the test clients of the built-in token endpoint (see tests/security_helpers.py)."""
    from tests.security_helpers import ec_key, rsa_key

    return {"imaging-reader": ec_key(), "reader": ec_key(), "writer": rsa_key(), "auditor": ec_key()}


@pytest.fixture
def secured(database_url: str, client_keys: dict) -> Iterator[TestClient]:
    """The app with access control on and the test clients (security_helpers.SCOPES) registered."""
    from fhir_bridge.security.clients import ClientRegistry
    from tests.security_helpers import SCOPES

    application = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    registry = ClientRegistry(application.state.services.engines)
    for client_id, scope in SCOPES.items():
        registry.add(client_id, scope, jwks=client_keys[client_id].jwks(), jwks_url=None)
    with TestClient(application, base_url="http://testserver") as test_client:
        test_client.event_hooks = {"request": [], "response": [check_response]}
        yield test_client
    application.state.services.close()
