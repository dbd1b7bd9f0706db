"""Test helpers for access control: client keys, signed assertions, tokens from the real token endpoint."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from fhir_bridge.security.clients import ASSERTION_TYPE

TOKEN_URL = "http://testserver/fhir/auth/token"
# The clients the ``secured`` fixture registers, with the largest scopes each may get.
SCOPES = {
    "imaging-reader": "system/ImagingStudy.rs",
    "reader": "system/ImagingStudy.rs system/Patient.rs",
    "writer": "system/*.cruds",
    "auditor": "system/AuditEvent.rs",
}


@dataclass(frozen=True)
class ClientKey:
    private: Any
    kid: str
    algorithm: str

    def jwks(self) -> dict[str, Any]:
        algorithm = jwt.algorithms.ECAlgorithm if self.algorithm.startswith("ES") else jwt.algorithms.RSAAlgorithm
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": self.algorithm}]}


def ec_key(kid: str = "ec-1") -> ClientKey:
    return ClientKey(ec.generate_private_key(ec.SECP384R1()), kid, "ES384")


def rsa_key(kid: str = "rsa-1") -> ClientKey:
    return ClientKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, "RS384")


def assertion(
    client_id: str, key: ClientKey, *, audience: str = TOKEN_URL, expires_in: int = 240, jti: str | None = None
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + expires_in,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid})


def token_request(client: TestClient, client_id: str, key: ClientKey, scope: str, **assertion_options: Any):  # type: ignore[no-untyped-def]
    return client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(client_id, key, **assertion_options),
            "scope": scope,
        },
    )


def bearer(client: TestClient, client_id: str, key: ClientKey, scope: str) -> dict[str, str]:
    answer = token_request(client, client_id, key, scope)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def headers_for(client: TestClient, keys: dict[str, ClientKey], client_id: str, scope: str | None = None) -> dict:
    """Authorization headers with a fresh token of a ``secured`` test client."""
    return bearer(client, client_id, keys[client_id], scope or SCOPES[client_id])
