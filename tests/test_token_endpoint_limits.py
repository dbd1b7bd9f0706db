"""The token endpoint locks out repeated failures (counted in the database: every worker counts the same),
and caches the JWKS of clients registered with a JWKS URL (fetched again for a key id it does not know)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.security.clients import ClientRegistry
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.security_helpers import ClientKey, ec_key, token_request

SCOPE = "system/Patient.rs"


def _worker(database_url: str, key_file: Path) -> Any:
    """One worker of the database (several share the database and the signing key file)."""
    settings = Settings(
        database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY, token_key_file=key_file
    )
    return create_app(settings)


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[list[TestClient]]:
    apps = [_worker(database_url, tmp_path / "keys.json") for _ in range(2)]
    clients = [TestClient(app, base_url="http://testserver") for app in apps]
    yield clients
    for client in clients:
        client.close()
    for app in apps:
        app.state.services.close()


def test_repeated_failures_lock_a_client_out_at_that_address_on_every_worker(workers: list[TestClient]) -> None:
    first, second = workers
    key, stranger = ec_key("pacs-1"), ec_key("pacs-1")  # the same kid, another key: the assertion fails
    registry = ClientRegistry(first.app.state.services.engines)  # type: ignore[attr-defined]
    registry.add("pacs", SCOPE, jwks=key.jwks(), jwks_url=None)
    other = ec_key("other-1")
    registry.add("other", SCOPE, jwks=other.jwks(), jwks_url=None)
    for attempt in range(5):  # spread over both workers: they count together
        assert token_request(workers[attempt % 2], "pacs", stranger, SCOPE).status_code == 401
    locked = token_request(second, "pacs", key, SCOPE)  # even the right key, now
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert token_request(first, "pacs", key, SCOPE).status_code == 429
    assert token_request(first, "other", other, SCOPE).status_code == 200  # another client from there is heard


def test_a_success_clears_the_failures_of_a_client(workers: list[TestClient]) -> None:
    first, _ = workers
    key, stranger = ec_key("pacs-1"), ec_key("pacs-1")
    ClientRegistry(first.app.state.services.engines).add(  # type: ignore[attr-defined]
        "pacs", SCOPE, jwks=key.jwks(), jwks_url=None
    )
    for _ in range(4):
        assert token_request(first, "pacs", stranger, SCOPE).status_code == 401
    assert token_request(first, "pacs", key, SCOPE).status_code == 200
    for _ in range(4):
        assert token_request(first, "pacs", stranger, SCOPE).status_code == 401
    assert token_request(first, "pacs", key, SCOPE).status_code == 200


def test_many_failures_from_one_address_lock_it_out_whatever_the_client_ids(workers: list[TestClient]) -> None:
    first, _ = workers
    stranger = ec_key("x-1")
    for number in range(20):
        assert token_request(first, f"guess-{number}", stranger, SCOPE).status_code == 401
    assert token_request(first, "guess-next", stranger, SCOPE).status_code == 429


class JwksServer:
    """A client's JWKS URL on loopback, counting its fetches; its keys can be rotated."""

    def __init__(self, key: ClientKey) -> None:
        self.keys = [key]
        self.fetches = 0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                body = json.dumps({"keys": [k for key in served.keys for k in key.jwks()["keys"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.url = f"http://127.0.0.1:{free_port()}/jwks.json"
        port = int(self.url.split(":")[2].split("/")[0])
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_clients_jwks_url_is_cached_and_fetched_again_for_a_new_key_id(workers: list[TestClient]) -> None:
    first, _ = workers
    key = ec_key("site-1")
    jwks = JwksServer(key)
    try:
        ClientRegistry(first.app.state.services.engines).add(  # type: ignore[attr-defined]
            "site", SCOPE, jwks=None, jwks_url=jwks.url
        )
        issuer = first.app.state.services.token_issuer  # type: ignore[attr-defined]
        issuer.jwks_refetch_cooldown_s = 0  # let the new kid be fetched at once (30 s between refetches otherwise)
        for _ in range(3):
            assert token_request(first, "site", key, SCOPE).status_code == 200
        assert jwks.fetches == 1  # not once per assertion
        rotated = ec_key("site-2")
        jwks.keys = [rotated]
        assert token_request(first, "site", rotated, SCOPE).status_code == 200  # an unknown kid: fetched again
        assert jwks.fetches == 2
        assert token_request(first, "site", rotated, SCOPE).status_code == 200
        assert jwks.fetches == 2
    finally:
        jwks.stop()
