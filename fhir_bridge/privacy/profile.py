"""Apply the de-identification decisions (data: ``data/deidentification.tsv``) to a DICOM header's attributes.

The table is an allow-list: an attribute without a row is never passed on, so reading one more
attribute cannot leak it by accident. It runs before any mapping, so the FHIR side never sees an
original identifier.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_bridge.dicom.reader import is_conformant_uid
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser

ACTIONS = frozenset(
    {"keep", "drop", "patient-pseudonym", "keyed-hash", "generalise-birth-date", "remap-uid", "descriptor", "items"}
)
PSEUDED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}
NONCONFORMANT_UIDS = (
    "UIDs that are not conformant DICOM UIDs (PS3.5 9.1) are replaced by 2.25 UIDs derived from them with the "
    "site secret; each such UID as sent is named as a derivation entity."
)
PS3_15_ANNEX_E = "https://dicom.nema.org/medical/dicom/current/output/chtml/part15/chapter_E.html"


@dataclass(frozen=True)
class Rule:
    """One row of the table: what PS3.15 says about an attribute and what fhir-bridge does with it."""

    keyword: str
    tag: str
    basic_profile: str
    keeping_option: str
    action: str
    why: str


@cache
def load_rules() -> dict[str, Rule]:
    text = files("fhir_bridge.privacy").joinpath("data/deidentification.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t")
    rules = {row["keyword"]: Rule(**row) for row in rows}
    unknown = {rule.action for rule in rules.values()} - ACTIONS
    if unknown:
        raise ValueError(f"deidentification.tsv names unknown actions: {sorted(unknown)}")
    return rules


class AttributePolicy:
    """The decisions for one configuration; ``apply`` returns the attributes that may be mapped."""

    def __init__(
        self,
        pseudonymiser: Pseudonymiser | None,
        *,
        pseudonymise: bool = True,
        remap_uids: bool = False,
        keep_descriptions: bool = False,
    ) -> None:
        if (pseudonymise or remap_uids) and pseudonymiser is None:
            raise ValueError("pseudonymising or remapping UIDs needs a Pseudonymiser (a site secret)")
        self.pseudonymiser = pseudonymiser
        self.pseudonymise = pseudonymise
        self.remap_uids = remap_uids
        self.keep_descriptions = keep_descriptions
        self.rules = load_rules()

    @property
    def security_labels(self) -> list[dict[str, str]]:
        """``meta.security`` of the resources built under this policy."""
        return [dict(PSEUDED)] if self.pseudonymise else []

    @property
    def derives_uids(self) -> bool:
        """Whether a UID that is not conformant can be replaced (that needs the site secret)."""
        return self.pseudonymiser is not None

    def uid(self, uid: str) -> str:
        """A UID as stored (also for UIDs named in a request URL): remapped when configured, and always
        when it is not a conformant DICOM UID, so that the same study maps the same way and FHIR stays valid."""
        if self.pseudonymiser is not None and (self.remap_uids or not is_conformant_uid(uid)):
            return self.pseudonymiser.uid(uid)
        return uid

    def apply(self, attributes: dict[str, Any], patient_system: str) -> dict[str, Any]:
        """The attributes that may be stored; ``patient_system`` namespaces the patient pseudonym."""
        kept: dict[str, Any] = {}
        for keyword, value in attributes.items():
            rule = self.rules.get(keyword)
            if rule is None:
                continue
            result = self._decide(rule.action, keyword, value, patient_system)
            if result is not None:
                kept[keyword] = result
        return kept

    def _decide(self, action: str, keyword: str, value: Any, patient_system: str) -> Any:
        if action == "remap-uid":
            return self.uid(value) if isinstance(value, str) else None
        if action == "items":  # a sequence: its items are cleaned by the same rules (also when not pseudonymising)
            return self._items(value, patient_system)
        if not self.pseudonymise or action == "keep":
            return value
        assert self.pseudonymiser is not None
        text = value if isinstance(value, str) else value[0] if isinstance(value, list) and value else None
        if action == "patient-pseudonym":
            return self.pseudonymiser.patient_identifier(patient_system, text) if isinstance(text, str) else None
        if action == "keyed-hash":
            return self.pseudonymiser.keyed_hash(keyword, text) if isinstance(text, str) else None
        if action == "generalise-birth-date":
            return self.pseudonymiser.birth_date(text) if isinstance(text, str) else None
        if action == "descriptor":
            return value if self.keep_descriptions else None
        return None  # drop

    def _items(self, value: Any, patient_system: str) -> list[dict[str, Any]] | None:
        if not isinstance(value, list):
            return None
        items = [self.apply(item, patient_system) for item in value if isinstance(item, dict)]
        return [item for item in items if item] or None

    def description(self) -> list[str]:
        """What is de-identified and how, one sentence per action: the Provenance narrative."""
        if not self.pseudonymise:
            lines = [
                "Pseudonymisation is off: identifiers and dates are stored as sent (patient names are never read)."
            ]
            if self.remap_uids:
                lines.append("Study, series and instance UIDs are replaced by 2.25 UIDs derived from the site secret.")
            elif self.derives_uids:
                lines.append(NONCONFORMANT_UIDS)
            return lines
        by_action: dict[str, list[str]] = {}
        for rule in self.rules.values():
            by_action.setdefault(rule.action, []).append(rule.keyword)
        precision = self.pseudonymiser.birth_date_precision if self.pseudonymiser else "year"
        lines = [
            "De-identified per DICOM PS3.15 Annex E (Basic Application Confidentiality Profile, DCM 113100) with "
            "the Retain Longitudinal Temporal Information Full Dates (DCM 113106) and Retain Patient "
            "Characteristics (DCM 113108) options.",
            "PatientID: replaced by a keyed pseudonym (HMAC-SHA256 of the identifier system and value with the "
            "site secret).",
            f"PatientBirthDate: reduced to the {precision.replace('-', ' and ')}.",
            f"Replaced by a keyed hash: {', '.join(by_action.get('keyed-hash', []))}.",
            "Patient names are never read; removed: " + ", ".join(self._removed(by_action)) + ".",
        ]
        if self.remap_uids:
            lines.append("Study, series and instance UIDs: replaced by 2.25 UIDs derived from the site secret.")
        else:
            lines.append("Study, series and instance UIDs: kept (Retain UIDs Option, DCM 113110).")
            lines.append(NONCONFORMANT_UIDS)
        lines.append(
            "Structured content (SR content trees, segments, ROIs): coded content kept, free text removed like the "
            "descriptors, person names never read (Clean Structured Content Option, DCM 113104, applied by rule)."
        )
        if self.keep_descriptions:
            lines.append("Descriptions, procedure and reason codes: kept as sent, by site configuration.")
        return lines

    def _removed(self, by_action: dict[str, list[str]]) -> list[str]:
        removed = list(by_action.get("drop", []))
        if not self.keep_descriptions:
            removed += by_action.get("descriptor", [])
        return removed
