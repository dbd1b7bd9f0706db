"""The keys that sign the built-in token endpoint's access tokens, kept in a file outside the database.

A copy of the database (or of its backup) must not be enough to mint tokens, so the private keys
live in a key file (JSON, mode 0600), like the pseudonym key: ``{"issuer": ..., "keys": [{"kid",
"created", "private_key"}, ...]}``. The newest key signs; the one before it still verifies (and is
published in ``/auth/jwks``) so that tokens issued just before a rotation stay valid until they
expire. ``rotate`` adds a new key and keeps one previous key. Running servers reread the file when it
changes (checked every few seconds, and at once for a key id they do not know), so every worker of a
database that shares the file follows a rotation without a restart.

The issuer id is written once, when the file is made, and does not change with the keys. A key held
in the database by earlier versions is moved into the file at start (``legacy``), its issuer kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

TOKEN_ALGORITHM = "ES256"
KEPT_KEYS = 2  # the signing key and the one before it


class SigningKeyError(ValueError):
    """The key file cannot be read or is not a key file of this server."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created: int  # seconds since the epoch
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": TOKEN_ALGORITHM}


class SigningKeys:
    """The key file: its issuer id, the key that signs now and the keys that still verify."""

    recheck_s = 5.0  # how often a running server looks whether the file changed

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self.issuer = ""
        self.keys: list[SigningKey] = []  # oldest first; the last one signs

    @classmethod
    def open(cls, path: Path, legacy: Callable[[], str | None] | None = None) -> SigningKeys:
        """The key file at ``path``, made at first use; ``legacy`` gives a PEM key that an earlier version
        kept in the database (moved into the file: it keeps verifying, and keeps signing if the file is new)."""
        keys = cls(path)
        legacy_pem = legacy() if legacy is not None else None
        legacy_key = _load_pem(legacy_pem) if legacy_pem else None
        first = legacy_key or ec.generate_private_key(ec.SECP256R1())
        _create(path, _document(f"urn:fhir-bridge:issuer:{_kid(first)}", [_entry(first)]))
        keys._reload()
        if legacy_key is not None and _kid(legacy_key) not in {k.kid for k in keys.keys}:
            document = keys._read()
            document["keys"].insert(0, _entry(legacy_key, created=0))
            _replace(path, document)
            keys._reload()
        return keys

    def rotate(self) -> SigningKey:
        """Add a new signing key; keep the previous one (it verifies tokens it signed until they expire)."""
        with self._lock:
            document = self._read()
            key = ec.generate_private_key(ec.SECP256R1())
            document["keys"] = [*document["keys"], _entry(key)][-KEPT_KEYS:]
            _replace(self.path, document)
        self._reload()
        return self.signing()

    def signing(self) -> SigningKey:
        self._refresh()
        return self.keys[-1]

    def verification_key(self, kid: str | None) -> Any:
        """The public key of ``kid`` (rereading the file once for a kid it does not know), or None."""
        self._refresh()
        found = self._find(kid)
        if found is None:
            self._reload()
            found = self._find(kid)
        return found.private_key.public_key() if found is not None else None

    def jwks(self) -> dict[str, Any]:
        self._refresh()
        return {"keys": [key.public_jwk for key in reversed(self.keys)]}

    def _find(self, kid: str | None) -> SigningKey | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        try:
            status = self.path.stat()
        except OSError:
            return  # keep serving with the keys in memory; the next look may find the file again
        if (status.st_mtime_ns, status.st_size) != self._stamp:
            self._reload()

    def _reload(self) -> None:
        document = self._read()
        with self._lock:
            self.issuer = str(document["issuer"])
            self.keys = [
                SigningKey(str(item["kid"]), int(item["created"]), _load_pem(item["private_key"]))
                for item in document["keys"]
            ]
            status = self.path.stat()
            self._stamp = (status.st_mtime_ns, status.st_size)
            self._checked = time.monotonic()

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as error:
            raise SigningKeyError(f"cannot read the token signing key file {self.path}: {error.strerror}") from None
        except ValueError:
            raise SigningKeyError(f"{self.path} is not a token signing key file (not JSON)") from None
        if not isinstance(document, dict) or not document.get("issuer") or not document.get("keys"):
            raise SigningKeyError(f"{self.path} is not a token signing key file (no issuer or keys)")
        return document


def key_ids(path: Path) -> list[str] | None:
    """The key ids (RFC 7638 thumbprints: public) of the key file at ``path``, None when there is none;
    what a backup records of the token signing keys, never the keys."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [str(item["kid"]) for item in document["keys"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_pem(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SigningKeyError("a token signing key is not an EC private key")
    return key


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _kid(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638 JWK thumbprint (EC members): a stable key id."""
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


def _entry(key: ec.EllipticCurvePrivateKey, created: int | None = None) -> dict[str, Any]:
    return {"kid": _kid(key), "created": int(time.time()) if created is None else created, "private_key": _pem(key)}


def _document(issuer: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {"issuer": issuer, "keys": keys}


def _create(path: Path, document: dict[str, Any]) -> None:
    """Write a new key file (mode 0600) whole; one that exists is kept (another worker made it first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _write_temporary(path, document)
    try:
        os.link(temporary, path)  # atomic, and fails if the file exists: no reader sees a part of it
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _write_temporary(path: Path, document: dict[str, Any]) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    return temporary


def _replace(path: Path, document: dict[str, Any]) -> None:
    """Rewrite the key file atomically (a reader sees the old file or the new one, never a part)."""
    os.replace(_write_temporary(path, document), path)
