"""Links from clinical records to imaging studies: which study a record names, and links made later.

The rules (the clinical and the DICOM side of the write path both follow them):

- A study is named by its StudyInstanceUID (unique) or by its accession number, which is unique only
  per issuer and patient: among the studies carrying the accession number, the one of the record's
  own patient is linked. (The DICOM path stores the Issuer of Accession Number as the accession
  identifier's system; a logical reference without a system matches any issuer.)
- A record that names a study of another patient than its own is refused with that reason.
- A record (a DiagnosticReport, Observation or Procedure) whose study is not stored yet is kept with
  a *logical* reference (``Reference.identifier``: the study's UID or accession number as stored)
  and a ``meta.tag`` in the system ``AWAITING``, one per way of finding the study. When the study
  arrives (STOW-RS, folder, C-STORE), the DICOM ingest finds the waiting records by tag in its own
  transaction, and if the study is of the record's patient, replaces the logical reference by a
  literal one and removes the tags: the record then reads as if it had arrived after its images (a
  re-push of it is unchanged).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fhir_bridge.interactions.writes import Transaction
from fhir_bridge.mapping.dicom import ACSN
from fhir_bridge.search.query import parse_search
from fhir_bridge.store.versions import StoredVersion

log = logging.getLogger("fhir_bridge.ingest")

AWAITING = "urn:fhir-bridge:awaiting-study"
DICOM_UID = "urn:dicom:uid"
ACSN_SYSTEM = ACSN["coding"][0]["system"]
_UNESCAPED_BAR = re.compile(r"(?<!\\)\|")
_MAX_MATCHES = 50
# The types a record waiting for its study may have: reports, and results or procedures derived from a study.
AWAITING_TYPES = ("DiagnosticReport", "Observation", "Procedure")


@dataclass(frozen=True)
class StudyKey:
    """One way of finding a study: by UID (``uid``) or by accession number (``accession``), as stored."""

    kind: str  # uid | accession
    value: str  # the UID, or the accession number as stored (keyed-hashed under pseudonymisation)
    issuer: str | None = None  # the accession number's issuer (an identifier system), when known

    @property
    def tag(self) -> dict[str, str]:
        return {"system": AWAITING, "code": f"{self.kind}:{self.value}"}

    @property
    def identifier(self) -> dict[str, Any]:
        if self.kind == "uid":
            return {"system": DICOM_UID, "value": f"urn:oid:{self.value}"}
        identifier: dict[str, Any] = {"type": ACSN, "value": self.value}
        if self.issuer:
            identifier["system"] = self.issuer
        return identifier

    @property
    def what(self) -> str:
        return "StudyInstanceUID" if self.kind == "uid" else "accession number"


def study_key(criterion: tuple[str, str]) -> StudyKey | None:
    """The study a lookup criterion (``identifier`` / ``identifier:of-type`` search) names, if it names one."""
    parameter, token = criterion
    parts = [_unescape(part) for part in _UNESCAPED_BAR.split(token)]
    if parameter == "identifier" and len(parts) == 2 and parts[0] == DICOM_UID and parts[1].startswith("urn:oid:"):
        return StudyKey("uid", parts[1].removeprefix("urn:oid:"))
    if parameter == "identifier:of-type" and len(parts) == 3 and parts[:2] == [ACSN_SYSTEM, "ACSN"]:
        return StudyKey("accession", parts[2])
    return None


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text)


def issuer_of(identifier: dict[str, Any]) -> str | None:
    return identifier.get("system")


def subject_of(resource: dict[str, Any] | None) -> str | None:
    """The Patient a resource is about (``subject`` or ``patient``), as a reference."""
    if resource is None:
        return None
    for element in ("subject", "patient"):
        reference = resource.get(element)
        if isinstance(reference, dict) and str(reference.get("reference", "")).startswith("Patient/"):
            return str(reference["reference"])
    return None


def study_keys(study: dict[str, Any]) -> list[StudyKey]:
    """The ways a stored ImagingStudy can be named: its UID and its accession numbers (with their issuers)."""
    keys = []
    for identifier in study.get("identifier", []):
        value = identifier.get("value")
        if not value:
            continue
        if identifier.get("system") == DICOM_UID and value.startswith("urn:oid:"):
            keys.append(StudyKey("uid", value.removeprefix("urn:oid:")))
        elif any(c.get("code") == "ACSN" for c in identifier.get("type", {}).get("coding", [])):
            keys.append(StudyKey("accession", value, issuer_of(identifier)))
    return keys


def await_study(resource: dict[str, Any], reference: dict[str, Any], keys: list[StudyKey]) -> None:
    """Make ``reference`` (inside ``resource``) a logical reference to the study ``keys`` name, and tag
    ``resource`` as waiting for it."""
    reference.pop("reference", None)
    reference["type"] = "ImagingStudy"
    reference["identifier"] = keys[0].identifier
    meta = resource.setdefault("meta", {})
    tags = meta.setdefault("tag", [])
    for key in keys:
        if key.tag not in tags:
            tags.append(key.tag)


def can_await(resource_type: str) -> bool:
    """Whether a record of this type may wait for its study (else a study not stored yet fails it)."""
    return resource_type in AWAITING_TYPES


def link_awaiting(transaction: Transaction, studies: list[StoredVersion]) -> list[StoredVersion]:
    """Link the records waiting for ``studies`` (each of its study's patient) in ``transaction``; the versions
    written. One index lookup per type that can wait and way of naming a study (a search by tag alone,
    across types, could not use the token index)."""
    written: list[StoredVersion] = []
    for study in studies:
        written.extend(_link(transaction, study))
    return written


def _link(transaction: Transaction, study: StoredVersion) -> list[StoredVersion]:
    resource = study.resource or {}
    patient = subject_of(resource)
    keys = study_keys(resource)
    written: list[StoredVersion] = []
    seen: set[tuple[str, str]] = set()
    for key, resource_type in ((key, t) for key in keys for t in AWAITING_TYPES):
        tag = key.tag
        query = parse_search(resource_type, [("_tag", f"{AWAITING}|{tag['code']}")], strict=True)
        for waiting in transaction.find(query, limit=_MAX_MATCHES):
            if (waiting.res_type, waiting.res_id) in seen or waiting.resource is None:
                continue
            seen.add((waiting.res_type, waiting.res_id))
            if subject_of(waiting.resource) != patient:
                log.warning("%s waits for a study now stored, but of another patient: not linked", waiting.reference)
                continue
            linked = _linked(waiting.resource, study.res_id, keys)
            stored = transaction.update(linked, None, waiting).stored
            assert stored is not None
            written.append(stored)
    return written


def _linked(resource: dict[str, Any], study_id: str, keys: list[StudyKey]) -> dict[str, Any]:
    """``resource`` with its logical references to the study (named by any of ``keys``) made literal."""
    identifiers = [key.identifier for key in keys]

    def names_study(value: dict[str, Any]) -> bool:
        identifier = value.get("identifier")
        if value.get("type") != "ImagingStudy" or "reference" in value or not isinstance(identifier, dict):
            return False
        return any(_same_identifier(identifier, known) for known in identifiers)

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if names_study(value):
                return {"reference": f"ImagingStudy/{study_id}"}
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    linked: dict[str, Any] = walk(resource)
    remaining = _logical_study_references(linked)
    meta = linked.get("meta", {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != AWAITING or remaining]
    if remaining:  # other studies still awaited: keep only their tags
        codes = {f"{k.kind}:{k.value}" for k in keys}
        tags = [t for t in meta.get("tag", []) if t.get("system") != AWAITING or t.get("code") not in codes]
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    if not meta:
        linked.pop("meta", None)
    return linked


def _same_identifier(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("value") != b.get("value"):
        return False
    if a.get("system") == DICOM_UID or b.get("system") == DICOM_UID:
        return a.get("system") == b.get("system")
    return a.get("system") in (None, b.get("system")) or b.get("system") is None


def _logical_study_references(value: Any) -> int:
    if isinstance(value, dict):
        if value.get("type") == "ImagingStudy" and "identifier" in value and "reference" not in value:
            return 1
        return sum(_logical_study_references(v) for v in value.values())
    if isinstance(value, list):
        return sum(_logical_study_references(v) for v in value)
    return 0
