"""Deployment settings of issue 12: the API documentation pages, and which proxies' X-Forwarded-* are believed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from fhir_bridge import Settings, create_app
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.cli.serve import uvicorn_options
from tests.conftest import TEST_PSEUDONYM_KEY, free_port

DOC_PAGES = ("/docs", "/redoc", "/openapi.json")


@pytest.mark.parametrize(
    ("auth", "api_docs", "served"),
    [("smart", None, False), ("smart", True, True), ("none", None, True), ("none", False, False)],
)
def test_the_api_documentation_is_off_with_access_control_unless_enabled(
    database_url: str, auth: str, api_docs: bool | None, served: bool
) -> None:
    settings = Settings(database_url=database_url, auth=auth, api_docs=api_docs, pseudonym_key=TEST_PSEUDONYM_KEY)
    app = create_app(settings)
    with TestClient(app) as client:
        statuses = {client.get(page).status_code for page in DOC_PAGES}
    app.state.services.close()
    assert statuses == ({200} if served else {404})
    assert "/fhir/{resource_type}" in app.openapi()["paths"]  # `fhir-bridge openapi` still has the document


@contextmanager
def _served_as_serve_does(app: FastAPI, settings: Settings) -> Iterator[str]:
    """``app`` run by uvicorn with the options ``fhir-bridge serve`` gives it."""
    server = uvicorn.Server(uvicorn.Config(app, **{**uvicorn_options(settings), "log_level": "warning"}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize(("trusted", "recorded"), [([], "127.0.0.1"), (["127.0.0.1"], "203.0.113.9")])
def test_forwarded_addresses_are_believed_from_trusted_proxies_only(
    database_url: str, trusted: list[str], recorded: str
) -> None:
    settings = Settings(
        database_url=database_url,
        auth="none",
        port=free_port(),
        trusted_proxies=trusted,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    app = create_app(settings)
    with _served_as_serve_does(app, settings) as origin:
        answer = httpx.get(f"{origin}/fhir/Patient", headers={"X-Forwarded-For": "203.0.113.9"})
        assert answer.status_code == 200
    with app.state.services.audit_log.engines.reader.connect() as connection:
        addresses = connection.execute(select(AUDIT.c.address).where(AUDIT.c.path == "/fhir/Patient")).scalars().all()
    app.state.services.close()
    assert addresses == [recorded]
