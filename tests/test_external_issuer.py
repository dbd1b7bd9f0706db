"""Tokens from the site's own OpenID Connect server, verified from its JWKS (discovered over real HTTP)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.security_helpers import ClientKey, ec_key, rsa_key

AUDIENCE = "http://testserver/fhir"


class IdentityProvider:
    """A minimal OpenID provider on loopback: discovery document and a JWKS that tests can rotate."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}/realms/hospital"
        self.keys: list[ClientKey] = [rsa_key("idp-1")]
        self.jwks_fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    body: dict[str, Any] = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/certs"}
                elif self.path.endswith("/certs"):
                    provider.jwks_fetches += 1
                    body = {"keys": [k for key in provider.keys for k in key.jwks()["keys"]]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: ClientKey | None = None, **changes: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "azp": "research-app",
            "sub": "service-account-research-app",
            "scope": "openid system/ImagingStudy.rs",
            "iat": now,
            "exp": now + 300,
            **changes,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    running = IdentityProvider()
    yield running
    running.stop()


@pytest.fixture
def client(database_url: str, provider: IdentityProvider) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url, auth="smart", auth_issuer=provider.issuer, pseudonym_key=TEST_PSEUDONYM_KEY
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
    app.state.services.close()


def _get(client: TestClient, path: str, token: str):  # type: ignore[no-untyped-def]
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_a_token_of_the_site_issuer_is_accepted_with_its_scopes(client: TestClient, provider: IdentityProvider) -> None:
    assert _get(client, "/fhir/ImagingStudy", provider.token()).status_code == 200
    refused = _get(client, "/fhir/Patient", provider.token())
    assert refused.status_code == 403
    assert "research-app" in refused.json()["issue"][0]["diagnostics"]
    # identity providers that send scopes as a list (scp)
    listed = provider.token(scope=None, scp=["system/Patient.rs"])
    assert _get(client, "/fhir/Patient", listed).status_code == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "http://another-server/fhir"},
        {"exp": int(time.time()) - 600},
        {"iss": "http://127.0.0.1:1/realms/other"},
        {"aud": None},
    ],
    ids=["wrong audience", "expired", "unknown issuer", "no audience"],
)
def test_tokens_failing_a_check_get_401(client: TestClient, provider: IdentityProvider, changes: dict) -> None:
    answer = _get(client, "/fhir/ImagingStudy", provider.token(**changes))
    assert answer.status_code == 401
    assert answer.json()["issue"][0]["code"] == "login"


def test_a_token_signed_by_a_key_the_issuer_does_not_publish_gets_401(
    client: TestClient, provider: IdentityProvider
) -> None:
    stranger = ec_key("idp-1")  # same kid, other key
    assert _get(client, "/fhir/ImagingStudy", provider.token(stranger)).status_code == 401
    unknown = ec_key("not-published")
    assert _get(client, "/fhir/ImagingStudy", provider.token(unknown)).status_code == 401


def test_rotated_keys_are_fetched_when_a_new_kid_appears(client: TestClient, provider: IdentityProvider) -> None:
    client.app.state.services.token_verifier.external.refetch_cooldown_s = 0  # type: ignore[attr-defined]
    assert _get(client, "/fhir/ImagingStudy", provider.token()).status_code == 200
    fetches = provider.jwks_fetches
    rotated = ec_key("idp-2")
    provider.keys = [rotated]
    assert _get(client, "/fhir/ImagingStudy", provider.token(rotated)).status_code == 200
    assert provider.jwks_fetches == fetches + 1


def test_an_unreachable_issuer_is_503_not_401(client: TestClient, provider: IdentityProvider) -> None:
    token = provider.token()
    provider.stop()
    answer = _get(client, "/fhir/ImagingStudy", token)
    assert answer.status_code == 503
    assert answer.json()["issue"][0]["code"] == "transient"
