"""Keyed, deterministic pseudonyms: the same value and secret give the same pseudonym, on every path and run.

HMAC-SHA256 with the site secret: without the secret a pseudonym cannot be computed from a guessed
identifier (a plain hash could, PatientIDs being short), and each kind of value is hashed in its
own domain so a pseudonym of one kind never equals that of another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

BirthDatePrecision = Literal["year", "year-month"]
_DATE = re.compile(r"^(\d{4})-?(\d{2})?-?(\d{2})?$")


class Pseudonymiser:
    """Pseudonyms under one site secret."""

    def __init__(self, key: bytes, birth_date_precision: BirthDatePrecision = "year") -> None:
        if not key:
            raise ValueError("a Pseudonymiser needs a secret key")
        self._key = key
        self.birth_date_precision = birth_date_precision

    def _digest(self, domain: str, *parts: str) -> bytes:
        message = "\x00".join((domain, *parts)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def fingerprint(self) -> str:
        """Names the key without revealing it (an HMAC of a fixed text under it): backups record it, so
        that a store is never restored under another key, whose pseudonyms would not match its own."""
        return "hmac-sha256:" + self._digest("key-fingerprint", "fhir-bridge").hex()[:32]

    def patient_identifier(self, system: str, value: str) -> str:
        """The pseudonym of a patient identifier (issuer system and value): what Patient.identifier holds."""
        return self._digest("patient-identifier", system, value).hex()

    def keyed_hash(self, domain: str, value: str) -> str:
        """A pseudonym for another identifying value (e.g. an accession number), in its own domain."""
        return self._digest(domain, value).hex()

    def uid(self, uid: str) -> str:
        """A ``2.25.`` UID derived from ``uid`` (a UUID, version 8, per PS3.5 B.2 and RFC 9562)."""
        raw = bytearray(self._digest("dicom-uid", uid)[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80
        raw[8] = (raw[8] & 0x3F) | 0x80
        return f"2.25.{int.from_bytes(raw, 'big')}"

    def birth_date(self, date: str) -> str | None:
        """A birth date (DICOM ``YYYYMMDD`` or FHIR ``YYYY-MM-DD``) reduced to the configured precision."""
        match = _DATE.match(date.strip())
        if not match or not 1800 <= int(match.group(1)) <= 2999:
            return None
        year, month = match.group(1), match.group(2)
        if self.birth_date_precision == "year-month" and month and 1 <= int(month) <= 12:
            return f"{year}-{month}"
        return year
