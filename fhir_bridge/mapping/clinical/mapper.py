"""One source record -> the FHIR resources a mapping makes of it, pseudonymised, before anything is stored.

Privacy is applied here, by the same policy object as the DICOM path: the patient id through the
``PatientID`` rule (``mapping.patient.patient_identity``), ``$deidentify`` values through the rule of
the DICOM keyword they name, identifiers derived from the record through keyed hashes. What leaves
this module holds no source identifier that the policy would not store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from fhir_bridge.errors import FhirError
from fhir_bridge.mapping import codes
from fhir_bridge.mapping.clinical.compiler import PATIENT, Mapping, ResourceRule
from fhir_bridge.mapping.clinical.template import (
    MISSING,
    Context,
    FieldError,
    PendingLookup,
    Translation,
    as_text,
    resolve,
)
from fhir_bridge.mapping.dicom import patient_system
from fhir_bridge.mapping.patient import patient_identity
from fhir_bridge.privacy.profile import AttributePolicy
from fhir_bridge.spec.validation import validate_resource

_INDEX = re.compile(r"\[\d+\]")
UNKNOWN = "unknown"  # the id of a resource whose identity failed: the record fails, it is never written


class RecordPrivacy:
    """The site's privacy policy as templates use it."""

    def __init__(self, policy: AttributePolicy, default_system: str) -> None:
        self.policy = policy
        self.default_system = default_system

    def deidentify(self, keyword: str, value: str) -> str | None:
        """``value`` as the DICOM path stores the attribute ``keyword`` (kept, hashed, generalised or dropped)."""
        return self.policy.apply({keyword: value}, self.default_system).get(keyword)

    def keyed_hash(self, domain: str, value: str) -> str:
        pseudonymiser = self.policy.pseudonymiser
        if self.policy.pseudonymise and pseudonymiser is not None:
            return pseudonymiser.keyed_hash(f"clinical:{domain}", value)
        return value

    @property
    def security(self) -> list[dict[str, str]]:
        return self.policy.security_labels


@dataclass
class Produced:
    """One resource made from a record; ``identifier`` is what a re-push finds it by."""

    rule: ResourceRule
    resource: dict[str, Any]
    identifier: tuple[str, str] | None  # (system, value); None for the Patient (written by id)

    @property
    def resource_type(self) -> str:
        return self.rule.resource_type


@dataclass
class MappedRecord:
    """What one record becomes, or why it cannot be stored."""

    produced: list[Produced] = field(default_factory=list)
    patient: dict[str, Any] | None = None  # the minimal Patient a reference to the patient needs
    lookups: list[PendingLookup] = field(default_factory=list)
    references: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)


class ClinicalMapper:
    """Applies one mapping under the site's privacy policy."""

    def __init__(
        self,
        mapping: Mapping,
        policy: AttributePolicy,
        default_system: str,
        zone: ZoneInfo | None,
        translations: dict[str, Translation] | None = None,
    ) -> None:
        self.mapping = mapping
        self.privacy = RecordPrivacy(policy, default_system)
        self.default_system = default_system
        self.zone = mapping.timezone or zone
        self.translations = translations or {}  # the ConceptMaps the mapping's $translate names, by url

    def map(self, record: dict[str, Any]) -> MappedRecord:
        """The record's resources, or every problem of the record (each once, none hiding another)."""
        context = Context(dict(record), self.privacy, self.zone, translations=self.translations)
        for name, node in self.mapping.derived:
            value = node.evaluate(context, "")
            if value is not MISSING:
                context.record[name] = value
        result = MappedRecord()
        identity = self._patient(context)
        if identity is not None:
            patient_id, identifier = identity
            context.targets[PATIENT] = f"Patient/{patient_id}"
            result.patient = self._labelled({"resourceType": "Patient", "id": patient_id, "identifier": [identifier]})
        elif self.mapping.patient is not None:
            context.targets[PATIENT] = f"Patient/{UNKNOWN}"  # the record fails; its other problems are still found
        active: list[tuple[ResourceRule, dict[str, Any], str, tuple[str, str] | None]] = []
        unfilled: dict[str | None, list[str]] = {}  # identifier columns found empty -> the resources needing them
        whole = context.record
        for rule in self.mapping.resources:
            made: list[str] = []
            for item in _items(rule, whole):
                context.record = item
                if rule.condition is not None and not rule.condition.holds(item):
                    continue
                if rule.identifier is None:  # the Patient: its identity is the patient's
                    if identity is None:
                        continue
                    made.append(f"Patient/{identity[0]}")
                    active.append((rule, item, identity[0], None))
                    continue
                key = self._identifier(context, rule, unfilled)
                derived_id = codes.resource_id(rule.resource_type, *key) if key is not None else UNKNOWN
                made.append(f"{rule.resource_type}/{derived_id}")
                active.append((rule, item, derived_id, key))
            if made:
                context.targets[rule.name] = made if rule.each is not None else made[0]
        for column, names in unfilled.items():
            if not any(error.column == column for error in context.errors):  # e.g. the empty patient id: said once
                context.fail(column, f"is empty, but the identifier of {', '.join(dict.fromkeys(names))} needs it")
        for rule, item, resource_id, key in active:
            context.record = item
            body = rule.template.evaluate(context, "")
            body = {} if body is MISSING else body
            resource = {"resourceType": rule.resource_type, "id": resource_id, **body}
            if key is not None:
                resource["identifier"] = [*resource.get("identifier", []), {"system": key[0], "value": key[1]}]
            elif rule.identifier is None:
                resource = self._patient_resource(resource, result.patient or {})
            result.produced.append(Produced(rule, self._labelled(resource), key))
        context.record = whole
        self._validate(result, context)
        result.lookups, result.references, result.errors = context.lookups, context.references, context.errors
        return result

    # identities -----------------------------------------------------------------------------------
    def _patient(self, context: Context) -> tuple[str, dict[str, Any]] | None:
        rule = self.mapping.patient
        if rule is None:
            return None
        value = rule.id.evaluate(context, "")
        column = getattr(rule.id, "path", None)
        if value is MISSING or as_text(value) is None:
            context.fail(column, "the patient id is missing")
            return None
        system = rule.system or self.default_system
        if rule.issuer is not None:
            issuer = rule.issuer.evaluate(context, "")
            system = patient_system({"IssuerOfPatientID": issuer if issuer is not MISSING else None}, system)
        identity = patient_identity(self.privacy.policy, system, str(as_text(value)))
        if identity is None:
            context.fail(column, "the patient id is not usable")
        return identity

    def _identifier(
        self, context: Context, rule: ResourceRule, unfilled: dict[str | None, list[str]]
    ) -> tuple[str, str] | None:
        spec = rule.identifier
        assert spec is not None
        parts = []
        complete = True
        for node in spec.parts:
            value = node.evaluate(context, "")
            if value is MISSING or as_text(value) is None:
                unfilled.setdefault(getattr(node, "path", None), []).append(f"{rule.resource_type} ({rule.name})")
                complete = False
                continue
            parts.append(str(as_text(value)))
        if not complete:
            return None
        joined = ":".join(parts)
        value = self.privacy.keyed_hash(f"identifier:{spec.system}", joined) if spec.hashed else joined
        return spec.system, value

    def _patient_resource(self, resource: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        """The Patient of the identity rule, its birth date generalised as the DICOM path generalises it."""
        resource["identifier"] = base["identifier"]
        if "birthDate" in resource:
            birth = self.privacy.deidentify("PatientBirthDate", str(resource["birthDate"]))
            if birth:
                resource["birthDate"] = birth
            else:
                del resource["birthDate"]
        return resource

    def _labelled(self, resource: dict[str, Any]) -> dict[str, Any]:
        if self.privacy.security:
            resource["meta"] = {"security": [dict(label) for label in self.privacy.security]}
        return resource

    # validation -----------------------------------------------------------------------------------
    def _validate(self, result: MappedRecord, context: Context) -> None:
        """Every resource must be valid FHIR before the write transaction; problems name their column.

        A column that already failed (an unknown code, a date no format reads) is not reported again for
        the element it left empty.
        """
        failed = {error.column for error in context.errors if error.column}
        for produced in result.produced:
            try:
                validate_resource(produced.resource, produced.resource_type)
            except FhirError as error:
                column = self._column(error, context)
                if column is None or column not in failed:
                    context.fail(column, _reason(error, produced))
        if result.patient is not None and not any(p.resource_type == "Patient" for p in result.produced):
            validate_resource(result.patient, "Patient")

    @staticmethod
    def _column(error: FhirError, context: Context) -> str | None:
        for expression in error.expression:
            path = expression.split(".", 1)[1] if "." in expression else ""
            for candidate in (path, _INDEX.sub("", path)):
                while candidate:
                    if candidate in context.columns:
                        return context.columns[candidate]
                    candidate = candidate.rpartition(".")[0]
        return None


def _reason(error: FhirError, produced: Produced) -> str:
    return f"the {produced.resource_type} ({produced.rule.name}) would not be valid FHIR: {error.diagnostics}"


def _items(rule: ResourceRule, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The records a resource rule is evaluated on: the record, or one per item of its ``forEach``."""
    each = rule.each
    if each is None:
        return [record]
    _found, value = resolve(record, each.path)
    values = value if isinstance(value, list) else [] if value is None else [value]
    if each.split is not None:
        values = [p.strip() for v in values if isinstance(v, str) for p in v.split(each.split) if p.strip()]
    items = []
    for index, item in enumerate(values, start=1):
        if isinstance(item, dict):
            items.append({**record, **item, "$index": index})
        elif as_text(item) is not None:
            items.append({**record, "$item": item, "$index": index})
    return items
