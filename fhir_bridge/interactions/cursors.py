"""Opaque, tamper-proof paging cursors.

A cursor is the position of the last row a page returned, signed with a secret kept in the
database (so every API worker of one store accepts the cursors of every other). A modified or
foreign cursor is a 400, never a crash and never another position.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from fhir_bridge.errors import FhirError

_SIGNATURE_BYTES = 16


class CursorSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, position: dict[str, Any]) -> str:
        payload = orjson.dumps(position)
        token = payload + self._sign(payload)
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, cursor: str, parameter: str = "_cursor") -> dict[str, Any]:
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            token = b""
        payload, signature = token[:-_SIGNATURE_BYTES], token[-_SIGNATURE_BYTES:]
        if len(token) <= _SIGNATURE_BYTES or not hmac.compare_digest(signature, self._sign(payload)):
            raise FhirError(
                400,
                "the paging cursor is not valid (modified, or from another server)",
                code="invalid",
                expression=parameter,
            )
        position = orjson.loads(payload)
        if not isinstance(position, dict):
            raise FhirError(400, "the paging cursor is not valid", code="invalid", expression=parameter)
        return position
