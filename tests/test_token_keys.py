"""The token signing keys live outside the database, rotate with overlapping key ids, and removed clients'
tokens stop working within seconds."""

from __future__ import annotations

import json
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import main
from fhir_bridge.security.clients import ClientRegistry
from fhir_bridge.store.database import create_engines, ensure_info, find_info
from fhir_bridge.store.migration import prepare_schema
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.security_helpers import ClientKey, bearer, ec_key

LEGACY = "token_signing_key"  # where earlier versions kept the key: the store's info table


def _app(database_url: str, key_file: Path) -> Any:
    settings = Settings(
        database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY, token_key_file=key_file
    )
    return create_app(settings)


@pytest.fixture
def reader() -> ClientKey:
    return ec_key("reader-1")


@pytest.fixture
def node(database_url: str, tmp_path: Path, reader: ClientKey) -> Iterator[TestClient]:
    app = _app(database_url, tmp_path / "token-keys.json")
    ClientRegistry(app.state.services.engines).add("reader", "system/Patient.rs", jwks=reader.jwks(), jwks_url=None)
    app.state.services.token_keys.recheck_s = 0  # see a rotation at once (a server looks every few seconds)
    app.state.services.token_verifier.registration_cache_s = 0  # and a removal (cached 5 s otherwise)
    with TestClient(app, base_url="http://testserver") as client:
        yield client
    app.state.services.close()


def _get(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/fhir/Patient", headers=headers).status_code


def _kid(headers: dict[str, str]) -> str:
    return str(jwt.get_unverified_header(headers["Authorization"].split()[1])["kid"])


def test_the_signing_key_is_in_a_private_file_not_in_the_database(
    node: TestClient, tmp_path: Path, reader: ClientKey
) -> None:
    token = bearer(node, "reader", reader, "system/Patient.rs")
    assert _get(node, token) == 200
    key_file = tmp_path / "token-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert find_info(node.app.state.services.engines, LEGACY) is None  # type: ignore[attr-defined]
    published = [key["kid"] for key in node.get("/fhir/auth/jwks").json()["keys"]]
    assert published == [_kid(token)]
    assert all("d" not in key for key in node.get("/fhir/auth/jwks").json()["keys"])


def test_a_key_held_in_the_database_moves_to_the_file_and_its_tokens_stay_valid(
    database_url: str, tmp_path: Path, reader: ClientKey
) -> None:
    old = ec.generate_private_key(ec.SECP256R1())
    pem = old.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    engines = create_engines(database_url)
    prepare_schema(engines)
    ensure_info(engines, LEGACY, pem.decode)  # as an earlier version left it
    engines.dispose()
    app = _app(database_url, tmp_path / "token-keys.json")
    ClientRegistry(app.state.services.engines).add("reader", "system/Patient.rs", jwks=reader.jwks(), jwks_url=None)
    issuer = app.state.services.token_issuer
    kid = issuer.jwks["keys"][0]["kid"]
    now = int(time.time())
    earlier_token = jwt.encode(  # a token the earlier version issued with that key
        {"iss": issuer.issuer, "aud": issuer.issuer, "client_id": "reader", "scope": "system/Patient.rs",
         "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex},
        old, algorithm="ES256", headers={"kid": kid},
    )  # fmt: skip
    assert issuer.issuer == f"urn:fhir-bridge:issuer:{kid}"  # the issuer id of before: its tokens stay valid
    assert find_info(app.state.services.engines, LEGACY) is None
    stored = json.loads((tmp_path / "token-keys.json").read_text())
    assert [k["private_key"] for k in stored["keys"]] == [pem.decode()]
    with TestClient(app, base_url="http://testserver") as client:
        assert _get(client, {"Authorization": f"Bearer {earlier_token}"}) == 200
    app.state.services.close()


def test_rotation_publishes_both_keys_and_retires_the_oldest_at_the_next_rotation(
    node: TestClient, database_url: str, tmp_path: Path, reader: ClientKey
) -> None:
    key_file = str(tmp_path / "token-keys.json")
    first = bearer(node, "reader", reader, "system/Patient.rs")
    kept_back = bearer(node, "reader", reader, "system/Patient.rs")  # of the first key, shown only at the end
    assert main(["keys", "rotate-signing", "--token-key-file", key_file, "--database-url", database_url]) == 0
    second = bearer(node, "reader", reader, "system/Patient.rs")
    assert _kid(second) != _kid(first)  # the running server signs with the new key
    assert [k["kid"] for k in node.get("/fhir/auth/jwks").json()["keys"]] == [_kid(second), _kid(first)]
    assert _get(node, first) == 200 and _get(node, second) == 200  # overlapping: both verify
    assert main(["keys", "rotate-signing", "--token-key-file", key_file, "--database-url", database_url]) == 0
    assert _get(node, kept_back) == 401  # its key is no longer kept
    assert _get(node, first) == 401  # nor once verified: a leaked key is out after two rotations
    assert _get(node, second) == 200


def test_removing_a_client_revokes_its_tokens(node: TestClient, database_url: str, reader: ClientKey) -> None:
    token = bearer(node, "reader", reader, "system/Patient.rs")
    assert _get(node, token) == 200
    assert main(["clients", "remove", "reader", "--database-url", database_url]) == 0
    refused = node.get("/fhir/Patient", headers=token)
    assert refused.status_code == 401
    assert "no longer a registered client" in refused.json()["issue"][0]["diagnostics"]


def test_registering_a_client_again_revokes_the_tokens_issued_before(node: TestClient, reader: ClientKey) -> None:
    token = bearer(node, "reader", reader, "system/Patient.rs")
    time.sleep(1.1)  # token times have whole seconds
    replacement = ec_key("reader-2")
    registry = ClientRegistry(node.app.state.services.engines)  # type: ignore[attr-defined]
    registry.add("reader", "system/Patient.rs", jwks=replacement.jwks(), jwks_url=None)
    assert _get(node, token) == 401
    assert _get(node, bearer(node, "reader", replacement, "system/Patient.rs")) == 200
