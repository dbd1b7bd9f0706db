"""Ingest FHIR pushed by a hospital (a transaction or batch Bundle, or NDJSON) through the privacy layer.

The plain REST API stores what it is given; this path is for identifiable FHIR from an EHR or an
integration engine. Each resource is de-identified with the site's one policy (the same object the
DICOM and clinical paths use) before anything is written:

- a Patient lands on the Patient its DICOM studies and clinical records land on: its identifier (the
  one of type MR, else the first) is pseudonymised by the ``PatientID`` rule (``mapping.patient``),
  which also gives the Patient's id; its other identifiers become keyed pseudonyms too; names,
  telecom, addresses, photos, contacts, extensions and the narrative are removed; the birth date is
  reduced like DICOM's PatientBirthDate; a date of death becomes ``deceasedBoolean``. RelatedPerson
  and Person lose the same elements;
- the identifiers of other resources follow the privacy table: Study Instance UIDs as the DICOM path
  stores them, accession numbers by the ``AccessionNumber`` rule, any other identifier as the keyed
  hash the clinical mappings give it (so the same identifier finds the same resource on every path);
- other resources get ids derived (keyed) from their id at the source, so a re-push updates them and
  references between pushes stay consistent; references to Patients (literal, by fullUrl, by
  conditional ``Patient?identifier=``, or logical by identifier) are rewritten to the pseudonymised
  Patient; a reference to a Patient the push does not hold cannot be resolved and is refused;
- the narrative (``text``) of every resource is dropped (generated narratives quote names), every
  resource gets the ``PSEUDED`` security label, and one Provenance names what was written.

The push is checked in full (each resource valid FHIR R4 after de-identification) before the write
transaction opens, and written all or nothing: an error names the entry (``Bundle.entry[n]``) or line.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.provenance import Source, provenance
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.mapping import codes
from fhir_bridge.mapping.clinical.mapper import RecordPrivacy
from fhir_bridge.mapping.merge import fill_missing
from fhir_bridge.mapping.patient import patient_identity
from fhir_bridge.privacy.fhir import DIRECT_IDENTIFIERS, PERSON_TYPES
from fhir_bridge.privacy.profile import AttributePolicy
from fhir_bridge.spec.registry import resource_types
from fhir_bridge.spec.validation import validate_resource
from fhir_bridge.store.versions import StoredVersion

log = logging.getLogger("fhir_bridge.ingest")

DICOM_UID = "urn:dicom:uid"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PUSHED_METHODS = ("POST", "PUT")
_PATIENT_ELEMENTS = ("subject", "patient")  # elements whose logical references name a Patient


@dataclass
class Pushed:
    """One resource of a push: where it stands (``Bundle.entry[3]``, ``line 4``) and how the sender named it."""

    where: str
    resource: dict[str, Any]
    full_url: str | None = None
    criteria: str | None = None  # a conditional PUT's url query (Patient?identifier=...)
    reference: str = ""  # Type/id as stored
    status: str = ""


@dataclass
class PushResult:
    items: list[Pushed]
    provenance: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "summary": {"resources": len(self.items), **self.counts},
            "resources": [{"entry": i.where, "reference": i.reference, "status": i.status} for i in self.items],
        }
        if self.provenance:
            answer["provenance"] = self.provenance
        return answer


def bundle_items(bundle: Any) -> tuple[str, list[Pushed]]:
    """The resources a transaction or batch Bundle pushes; other entries (GET, DELETE, PATCH) are refused."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "the body must be a Bundle (or NDJSON)", code="invalid", expression="resourceType")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise FhirError(
            400, f"Bundle.type must be transaction or batch, not {kind!r}", code="invalid", expression="Bundle.type"
        )
    items = []
    for index, entry in enumerate(bundle.get("entry") or []):
        where = f"Bundle.entry[{index}]"
        request = entry.get("request") if isinstance(entry, dict) else None
        method = request.get("method") if isinstance(request, dict) else None
        if method not in PUSHED_METHODS:
            raise FhirError(
                400,
                f"{where}: the FHIR ingest stores resources (POST, PUT); a {method or 'request-less'} entry is not "
                "accepted here (the REST API serves reads and deletions)",
                code="not-supported",
                expression=f"{where}.request.method",
            )
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise FhirError(400, f"{where} has no resource", code="required", expression=f"{where}.resource")
        assert isinstance(request, dict)  # its method was checked above
        url = urlsplit(str(request.get("url", "")))
        items.append(Pushed(where, resource, entry.get("fullUrl"), url.query or None))
    return kind, items


def ndjson_items(lines: Iterable[tuple[int, Any]]) -> list[Pushed]:
    """Resources from parsed NDJSON lines (line number, value)."""
    items = []
    for number, value in lines:
        if not isinstance(value, dict) or "resourceType" not in value:
            raise FhirError(400, f"line {number} is not a FHIR resource", code="invalid", expression=f"line {number}")
        items.append(Pushed(f"line {number}", value))
    return items


class FhirIngest:
    """De-identifies pushed FHIR resources under the site's policy and writes them through the one write path."""

    def __init__(self, interactions: FhirInteractions, policy: AttributePolicy, default_system: str) -> None:
        self.interactions = interactions
        self.policy = policy
        self.privacy = RecordPrivacy(policy, default_system)  # the clinical path's keyed hashes, shared
        self.default_system = default_system

    def ingest(self, items: list[Pushed], source: Source) -> PushResult:
        if not items:
            raise FhirError(400, "the push holds no resource", code="required")
        for item in items:  # as sent: valid R4 (so that de-identification meets the shapes it expects)
            resource_type = item.resource.get("resourceType")
            if resource_type not in resource_types():
                raise FhirError(400, f"{item.where}: {resource_type!r} is no FHIR R4 resource type", code="invalid")
            _refuse_nested_people(item)
            try:
                validate_resource(item.resource, resource_type)
            except FhirError as error:
                raise FhirError(
                    error.status,
                    f"{item.where}: {error.diagnostics}",
                    code=error.code,
                    expression=[item.where, *error.expression],
                ) from None
        names = self._identities(items)
        cleaned = [(item, self._clean(item, names)) for item in items]
        for item, resource in cleaned:
            try:
                validate_resource(resource, resource["resourceType"])
            except FhirError as error:
                raise FhirError(
                    422,
                    f"{item.where}: after de-identification, not valid FHIR: {error.diagnostics}",
                    code="processing",
                    expression=[item.where],
                ) from None
        return self._write(cleaned, source)

    # identities ------------------------------------------------------------------------------
    def _identities(self, items: list[Pushed]) -> dict[str, str]:
        """Every name the sender gives a pushed resource (fullUrl, Type/id, conditional url) -> Type/id as stored."""
        names: dict[str, str] = {}
        seen: dict[str, str] = {}
        for item in items:
            resource = item.resource
            resource_type = resource["resourceType"]
            if resource_type == "Patient":
                reference = f"Patient/{self._patient_id(item)}"
            else:
                reference = f"{resource_type}/{self._resource_id(resource)}"
            if reference in seen:
                raise FhirError(
                    400,
                    f"{item.where} and {seen[reference]} are the same {resource_type}: send it once",
                    code="duplicate",
                    expression=[item.where],
                )
            seen[reference] = item.where
            item.reference = reference
            if item.full_url:
                names[item.full_url] = reference
            if resource.get("id"):
                names[f"{resource_type}/{resource['id']}"] = reference
            if item.criteria:
                names[f"{resource_type}?{item.criteria}"] = reference
        return names

    def _patient_id(self, item: Pushed) -> str:
        identifiers = [i for i in item.resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
        if not identifiers and item.criteria:  # PUT Patient?identifier=system|value
            named = _criteria_identifier(item.criteria)
            identifiers = [named] if named else []
        if not identifiers:
            raise FhirError(
                422,
                f"{item.where}: a Patient needs an identifier (system and value) to be pseudonymised",
                code="required",
                expression=[item.where, "Patient.identifier"],
            )
        primary = next((i for i in identifiers if _is_type(i, "MR")), identifiers[0])
        identity = self._patient_identity(primary)
        if identity is None:
            raise FhirError(422, f"{item.where}: the patient identifier is not usable", code="invalid")
        return identity[0]

    def _patient_identity(self, identifier: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        system = identifier.get("system") or self.default_system
        return patient_identity(self.policy, system, str(identifier["value"]))

    def _resource_id(self, resource: dict[str, Any]) -> str:
        """A keyed id from the source's own id (so references between pushes agree), else from an identifier."""
        resource_type = resource["resourceType"]
        if resource.get("id"):
            return self._derived_id(resource_type, str(resource["id"]))
        identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
        if identifiers:
            stored = self._identifier(identifiers[0])
            return codes.resource_id(resource_type, "fhir-push-identifier", str(stored.get("system")), stored["value"])
        return str(uuid.uuid4())

    def _derived_id(self, resource_type: str, source_id: str) -> str:
        return codes.resource_id(
            resource_type, "fhir-push", self.privacy.keyed_hash("fhir-id", f"{resource_type}/{source_id}")
        )

    # de-identification -----------------------------------------------------------------------
    def _clean(self, item: Pushed, names: dict[str, str]) -> dict[str, Any]:
        resource = item.resource
        resource_type = resource["resourceType"]
        cleaned: dict[str, Any] = {}
        for key, value in resource.items():
            if key in ("text", "meta", "id"):
                continue
            if resource_type in PERSON_TYPES and (
                key in DIRECT_IDENTIFIERS or key in ("extension", "modifierExtension") or key.startswith("_")
            ):
                continue
            cleaned[key] = self._walk(value, names, item, key)
        cleaned["id"] = item.reference.split("/", 1)[1]
        cleaned = {"resourceType": resource_type, **{k: v for k, v in cleaned.items() if k != "resourceType"}}
        if resource_type in PERSON_TYPES:
            self._person(cleaned, resource)
        elif isinstance(resource.get("identifier"), list):
            cleaned["identifier"] = [self._identifier(i) for i in resource["identifier"] if isinstance(i, dict)]
        elif isinstance(resource.get("identifier"), dict):
            cleaned["identifier"] = self._identifier(resource["identifier"])
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k in ("profile", "tag")}
        if self.policy.security_labels:
            meta["security"] = [dict(label) for label in self.policy.security_labels]
        if meta:
            cleaned["meta"] = meta
        return _prune(cleaned)

    def _person(self, cleaned: dict[str, Any], resource: dict[str, Any]) -> None:
        identifiers = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
        if cleaned["resourceType"] == "Patient" and identifiers:
            primary = next((i for i in identifiers if _is_type(i, "MR")), identifiers[0])
            ordered = [primary, *(i for i in identifiers if i is not primary)]
            stored = []
            for identifier in ordered:
                identity = self._patient_identity(identifier)
                if identity is not None:
                    stored.append({**_kept(identifier), **identity[1]})
            cleaned["identifier"] = stored
        elif identifiers:
            cleaned["identifier"] = [self._identifier(i) for i in identifiers]
        else:
            cleaned.pop("identifier", None)
        if "birthDate" in cleaned:
            birth = self.privacy.deidentify("PatientBirthDate", str(cleaned["birthDate"]))
            if birth:
                cleaned["birthDate"] = birth
            else:
                del cleaned["birthDate"]
        if "deceasedDateTime" in cleaned:
            del cleaned["deceasedDateTime"]
            cleaned["deceasedBoolean"] = True

    def _identifier(self, identifier: dict[str, Any]) -> dict[str, Any]:
        """An identifier of a resource other than a person, as the privacy table stores it."""
        value = identifier.get("value")
        kept = _kept(identifier)
        if not isinstance(value, str) or not value:
            return kept
        system = identifier.get("system")
        if system == DICOM_UID:
            uid = value.removeprefix("urn:oid:")
            return {**kept, "system": DICOM_UID, "value": f"urn:oid:{self.policy.uid(uid)}"}
        if _is_type(identifier, "ACSN"):
            stored = self.privacy.deidentify("AccessionNumber", value)
            return {**kept, "value": stored} if stored else {k: v for k, v in kept.items() if k != "system"}
        return {**kept, "value": self.privacy.keyed_hash(f"identifier:{system}", value)}

    def _walk(self, value: Any, names: dict[str, str], item: Pushed, key: str) -> Any:
        if isinstance(value, list):
            return [self._walk(v, names, item, key) for v in value]
        if not isinstance(value, dict):
            return value
        if "reference" in value or ("identifier" in value and ("type" in value or key in _PATIENT_ELEMENTS)):
            return self._reference(value, names, item, key)
        return {k: self._walk(v, names, item, k) for k, v in value.items()}

    def _reference(self, value: dict[str, Any], names: dict[str, str], item: Pushed, key: str) -> dict[str, Any]:
        result = {k: v for k, v in value.items() if k not in ("reference", "identifier", "display")}
        target = value.get("reference")
        if isinstance(target, str) and not target.startswith("#"):
            result["reference"] = self._resolve(target, names, item)
        elif isinstance(target, str):
            result["reference"] = target
        identifier = value.get("identifier")
        names_patient = value.get("type") == "Patient" or str(result.get("reference", "")).startswith("Patient/")
        names_patient = names_patient or (key in _PATIENT_ELEMENTS and "reference" not in value)
        if isinstance(identifier, dict) and identifier.get("value"):
            if names_patient:
                identity = self._patient_identity(identifier)
                if identity is not None:
                    result.setdefault("reference", f"Patient/{identity[0]}")
            else:
                result["identifier"] = self._identifier(identifier)
        if "display" in value and not names_patient:
            result["display"] = value["display"]
        return result

    def _resolve(self, target: str, names: dict[str, str], item: Pushed) -> str:
        if target in names:
            return names[target]
        split = urlsplit(target)
        parts = [p for p in split.path.split("/") if p]
        if split.scheme in ("http", "https") and len(parts) >= 2:
            local = "/".join(parts[-2:])
            if local in names:
                return names[local]
            parts = parts[-2:]
        if target.startswith("Patient?") and (identifier := _criteria_identifier(target.partition("?")[2])):
            identity = self._patient_identity(identifier)
            if identity is not None:
                return f"Patient/{identity[0]}"
        if len(parts) == 2 and parts[0] in resource_types() and not split.query:
            if parts[0] == "Patient":
                raise FhirError(
                    422,
                    f"{item.where}: the reference to {target!r} names a Patient this push does not hold: push the "
                    "Patient with it (its pseudonym comes from its identifier), or reference it by identifier",
                    code="not-found",
                    expression=[item.where],
                )
            return f"{parts[0]}/{self._derived_id(parts[0], parts[1])}"
        raise FhirError(
            422,
            f"{item.where}: the reference {target!r} cannot be resolved in this push",
            code="not-found",
            expression=[item.where],
        )

    # the transaction ---------------------------------------------------------------------------
    def _write(self, cleaned: list[tuple[Pushed, dict[str, Any]]], source: Source) -> PushResult:
        written: list[StoredVersion] = []
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        result = PushResult([item for item, _ in cleaned], counts=counts)
        with self.interactions.transaction() as transaction:
            for item, resource in cleaned:
                current = transaction.current(resource["resourceType"], resource["id"])
                alive = current.resource if current is not None and not current.deleted else None
                if resource["resourceType"] == "Patient" and alive is not None:
                    resource = fill_missing(resource, alive)  # what the push says wins; DICOM's rest stays
                outcome = transaction.update(resource, None, current)
                item.status = "unchanged" if not outcome.changed else "created" if outcome.status == 201 else "updated"
                counts[item.status] += 1
                if outcome.changed and outcome.stored is not None:
                    written.append(outcome.stored)
            if written:
                record = self._provenance(source, written, transaction.recorded, len(cleaned))
                validate_resource(record, "Provenance")
                transaction.create(record, new_id=record["id"])
                result.provenance = record["id"]
        log.info(
            "FHIR push (%s): %d resources, %d created, %d updated, %d unchanged",
            source.channel,
            len(cleaned),
            counts["created"],
            counts["updated"],
            counts["unchanged"],
        )
        return result

    def _provenance(self, source: Source, written: list[StoredVersion], recorded: str, count: int) -> dict[str, Any]:
        lines = [
            "Patient identifiers replaced by keyed pseudonyms (HMAC-SHA256 with the site secret), the Patient's id "
            "derived from its identifier as on the DICOM and clinical paths.",
            "Removed from Patient, RelatedPerson and Person: " + ", ".join(DIRECT_IDENTIFIERS) + ", extensions; "
            "birth date reduced as DICOM's PatientBirthDate; the narrative of every resource removed.",
            "Identifiers of other resources stored as the privacy table stores them (UIDs, accession numbers) or "
            "as keyed hashes.",
        ]
        if not self.policy.pseudonymise:
            lines[0] = "Pseudonymisation is off: identifiers are stored as sent."
        items = "".join(f"<li>{escape(line)}</li>" for line in lines)
        return provenance(
            source,
            written,
            recorded,
            activity={"text": f"FHIR push ({source.channel})"},
            narrative=f"<p>{count} FHIR resources pushed by {escape(source.sender)} ({escape(source.channel)}).</p>"
            f"<ul>{items}</ul>",
            entities=[{"role": "source", "what": {"display": f"{count} FHIR resources pushed"}}],
            security_labels=self.policy.security_labels or None,
        )


def _refuse_nested_people(item: Pushed) -> None:
    """Resources inside resources are not de-identified one by one: a Bundle's entries are pushed as the push's
    own resources, and a person may not be contained (it would keep its name)."""
    resource = item.resource
    if resource["resourceType"] in ("Bundle", "Parameters"):
        raise FhirError(
            422,
            f"{item.where}: a {resource['resourceType']} inside a push is not de-identified: push its resources",
            code="not-supported",
            expression=[item.where],
        )
    for index, contained in enumerate(resource.get("contained") or []):
        if isinstance(contained, dict) and contained.get("resourceType") in PERSON_TYPES:
            raise FhirError(
                422,
                f"{item.where}: a contained {contained['resourceType']} is not de-identified: push it as a resource "
                "of its own and refer to it",
                code="not-supported",
                expression=[f"{item.where}.contained[{index}]"],
            )


def _is_type(identifier: dict[str, Any], code: str) -> bool:
    codings = (identifier.get("type") or {}).get("coding") or []
    return any(c.get("code") == code and c.get("system") in (V2_0203, None) for c in codings if isinstance(c, dict))


def _kept(identifier: dict[str, Any]) -> dict[str, Any]:
    """What of an identifier is not the value: its use, type, system, period (assigner and text removed)."""
    return {k: v for k, v in identifier.items() if k in ("use", "type", "system", "period")}


def _criteria_identifier(query: str) -> dict[str, Any] | None:
    for name, value in parse_qsl(query):
        if name == "identifier":
            system, bar, code = value.partition("|")
            return {"system": system or None, "value": code} if bar else {"value": value}
    return None


def _prune(value: Any) -> Any:
    """No empty objects or arrays (json.html) after elements were removed."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None, "")}
    if isinstance(value, list):
        return [v for v in (_prune(v) for v in value) if v not in ({}, [], None, "")]
    return value
