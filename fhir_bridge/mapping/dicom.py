"""DICOM instance attributes -> the FHIR resources of a study (FHIR R4 ImagingStudy "DICOM mapping").

The attributes pass the privacy policy first (``DicomMapper.deidentify``), so what is mapped here
is already pseudonymised: the original PatientID, names or birth date never reach a resource.
Ids are derived from what identifies a thing (study UID, patient pseudonym, endpoint URL, device
model), so every push path and every concurrent sender lands on the same resources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from fhir_bridge.dicom.reader import DicomInstance
from fhir_bridge.mapping import codes, derived
from fhir_bridge.mapping.merge import StudyMerge
from fhir_bridge.mapping.patient import patient_resource_id
from fhir_bridge.mapping.study_context import StudyContext
from fhir_bridge.privacy.profile import AttributePolicy

ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
ACCESSION_ISSUER = "urn:fhir-bridge:accession-issuer"  # prefix of the system of an issuer named only locally
GENDERS = {"M": "male", "F": "female", "O": "other"}
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")


@dataclass(frozen=True)
class MappingConfig:
    """Site settings the mapping needs (from ``Settings``)."""

    patient_identifier_system: str
    wado_rs_base_url: str | None = None
    time_zone: ZoneInfo | None = None


@dataclass
class StudyResources:
    """What one study's instances become: its ImagingStudy (a fragment to merge), Patient and Devices."""

    study: dict[str, Any]
    patient: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)  # SOP Instance UIDs naming another patient
    # what SR, SEG and RTSTRUCT instances add (``mapping.derived``): DiagnosticReports, Observations, Media,
    # and the shared Devices and BodyStructures (``derived.SHARED_TYPES``)
    derived: list[dict[str, Any]] = field(default_factory=list)


def patient_system(attributes: dict[str, Any], default: str) -> str:
    """Patient.identifier.system: the issuer as OID or URI when it is one, else ``<default>:<issuer>``."""
    return issuer_system(attributes, codes.text(attributes.get("IssuerOfPatientID")), default) or default


def issuer_system(qualifiers: dict[str, Any], local: str | None, default: str) -> str | None:
    """An issuer (DICOM's Universal Entity ID and its type, else its local name) as an identifier system: an
    OID, UUID or URI as itself, another name as ``<default>:<name>``; None when there is no issuer."""
    universal = codes.text(qualifiers.get("UniversalEntityID"))
    kind = (codes.text(qualifiers.get("UniversalEntityIDType")) or "").upper()
    if universal and kind == "ISO" and _OID.match(universal):
        return f"urn:oid:{universal}"
    if universal and kind == "UUID":
        return f"urn:uuid:{universal.lower()}"
    if universal and kind in ("URI", "URL") and _URI.match(universal):
        return universal
    if not local:
        return None
    if _OID.match(local):
        return f"urn:oid:{local}"
    if local.startswith(("urn:", "http://", "https://")) and _URI.match(local):
        return local
    return f"{default}:{re.sub(r'[^A-Za-z0-9._~-]', '_', local)}"


def accession_system(attributes: dict[str, Any]) -> str | None:
    """The accession number's Identifier.system: its issuer (Issuer of Accession Number Sequence) as for a
    patient's issuer, a local name as ``urn:fhir-bridge:accession-issuer:<name>``; None when the file names none."""
    items = attributes.get("IssuerOfAccessionNumberSequence") or []
    issuer = items[0] if items and isinstance(items[0], dict) else {}
    return issuer_system(issuer, codes.text(issuer.get("LocalNamespaceEntityID")), ACCESSION_ISSUER)


class DicomMapper:
    """Builds FHIR resources from de-identified DICOM attributes, under one privacy policy and site config."""

    def __init__(self, policy: AttributePolicy, config: MappingConfig) -> None:
        self.policy = policy
        self.config = config

    # de-identification -------------------------------------------------------------------------
    def deidentify(self, instance: DicomInstance) -> dict[str, Any]:
        """The attributes that may be mapped; the issuer attributes they keep give the same patient system."""
        return self.policy.apply(instance.attributes, self._system(instance.attributes))

    def _system(self, attributes: dict[str, Any]) -> str:
        return patient_system(attributes, self.config.patient_identifier_system)

    # shared resources ----------------------------------------------------------------------
    def endpoint(self) -> dict[str, Any] | None:
        """The WADO-RS Endpoint of the site, or None when no base URL is configured."""
        address = self.config.wado_rs_base_url
        if not address:
            return None
        return {
            "resourceType": "Endpoint",
            "id": codes.resource_id("Endpoint", address),
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
            },
            "name": "WADO-RS",
            "payloadType": [{"text": "DICOM WADO-RS"}],
            "payloadMimeType": ["application/dicom"],
            "address": address,
        }

    # one study -------------------------------------------------------------------------------
    def study(self, instances: Iterable[dict[str, Any]]) -> StudyResources:
        """The resources of one study from its instances' de-identified attributes (same StudyInstanceUID)."""
        merge = StudyMerge()
        patients: dict[str, dict[str, Any]] = {}
        devices: dict[str, dict[str, Any]] = {}
        conflicting: list[str] = []
        content: dict[tuple[str, str], dict[str, Any]] = {}
        for attributes in instances:
            patient = self.patient(attributes)
            device = self.device(attributes)
            if device:
                devices.setdefault(device["id"], device)
            if not merge.add(self.instance_study(attributes, patient, device)):
                conflicting.append(attributes["SOPInstanceUID"])
            patients.setdefault(patient["id"], patient)
            for resource in derived.derived_resources(attributes, self._context(attributes, patient)):
                content.setdefault((resource["resourceType"], resource["id"]), resource)
        study = merge.result()
        subject = study["subject"]["reference"].split("/", 1)[1]
        resources = list(content.values())
        derived.assign_subject(resources, study["subject"])
        return StudyResources(study, patients[subject], list(devices.values()), conflicting, resources)

    def _context(self, attributes: dict[str, Any], patient: dict[str, Any]) -> StudyContext:
        """The study an instance belongs to, for what its content adds (reports, annotations)."""
        study_uid = attributes["StudyInstanceUID"]
        return StudyContext(
            patient_id=patient["id"],
            study_id=codes.resource_id("ImagingStudy", study_uid),
            study_uid=study_uid,
            security=tuple(self.policy.security_labels),
            effective=self._started(attributes),
            time_zone=self.config.time_zone,
            wado_rs_base_url=self.config.wado_rs_base_url,
        )

    def _started(self, attributes: dict[str, Any]) -> str | None:
        return codes.fhir_datetime(
            attributes.get("StudyDate"),
            attributes.get("StudyTime"),
            attributes.get("TimezoneOffsetFromUTC"),
            self.config.time_zone,
        )

    def patient(self, attributes: dict[str, Any]) -> dict[str, Any]:
        system, value = self._system(attributes), codes.text(attributes.get("PatientID"))
        patient: dict[str, Any] = {"resourceType": "Patient"}
        if value:
            patient["id"] = patient_resource_id(system, value)
            patient["identifier"] = [{"system": system, "value": value}]
        else:  # no PatientID: a patient known only through this study
            patient["id"] = codes.resource_id("Patient-of-study", attributes["StudyInstanceUID"])
        if self.policy.security_labels:
            patient["meta"] = {"security": self.policy.security_labels}
        gender = GENDERS.get((codes.first(attributes.get("PatientSex")) or "").upper())
        if gender:
            patient["gender"] = gender
        birth = codes.fhir_date(attributes.get("PatientBirthDate"))
        if birth:
            patient["birthDate"] = birth
        return patient

    def device(self, attributes: dict[str, Any]) -> dict[str, Any] | None:
        """The acquiring equipment, by manufacturer and model (never serial number or station name)."""
        maker = codes.text(attributes.get("Manufacturer"))
        model = codes.text(attributes.get("ManufacturerModelName"))
        if not maker and not model:
            return None
        device: dict[str, Any] = {"resourceType": "Device", "id": codes.resource_id("Device", maker or "", model or "")}
        if maker:
            device["manufacturer"] = maker
        if model:
            device["deviceName"] = [{"name": model, "type": "model-name"}]
        device["type"] = {"coding": [codes.modality(attributes.get("Modality"))]}
        return device

    def instance_study(
        self, attributes: dict[str, Any], patient: dict[str, Any], device: dict[str, Any] | None
    ) -> dict[str, Any]:
        """An ImagingStudy holding just this instance (and its series): the unit that is merged."""
        study_uid = attributes["StudyInstanceUID"]
        study: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "id": codes.resource_id("ImagingStudy", study_uid),
            "identifier": self._identifiers(attributes),
            "status": "available",
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
        if self.policy.security_labels:
            study["meta"] = {"security": self.policy.security_labels}
        optional = {
            "started": self._started(attributes),
            "description": codes.text(attributes.get("StudyDescription")),
            "referrer": {"display": name} if (name := _person(attributes.get("ReferringPhysicianName"))) else None,
        }
        study.update({key: value for key, value in optional.items() if value})
        if procedure := codes.concept(attributes.get("ProcedureCodeSequence")):
            study["procedureCode"] = [procedure]
        reason = codes.concept(
            attributes.get("ReasonForRequestedProcedureCodeSequence"), attributes.get("ReasonForTheRequestedProcedure")
        )
        if reason:
            study["reasonCode"] = [reason]
        endpoint = self._endpoint_references()
        if endpoint:
            study["endpoint"] = endpoint
        study["series"] = [self._series(attributes, device, endpoint)]
        return study

    def _identifiers(self, attributes: dict[str, Any]) -> list[dict[str, Any]]:
        identifiers: list[dict[str, Any]] = [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{attributes['StudyInstanceUID']}"}
        ]
        accession = codes.text(attributes.get("AccessionNumber"))
        if accession:
            identifier: dict[str, Any] = {"type": ACSN, "value": accession}
            issuer = accession_system(attributes)
            if issuer:
                identifier["system"] = issuer
            identifiers.append(identifier)
        return identifiers

    def _endpoint_references(self) -> list[dict[str, str]]:
        endpoint = self.endpoint()
        return [{"reference": f"Endpoint/{endpoint['id']}"}] if endpoint else []

    def _series(
        self, attributes: dict[str, Any], device: dict[str, Any] | None, endpoint: list[dict[str, str]]
    ) -> dict[str, Any]:
        zone = self.config.time_zone
        series: dict[str, Any] = {"uid": attributes["SeriesInstanceUID"]}
        optional = {
            "number": codes.unsigned(attributes.get("SeriesNumber")),
            "modality": codes.modality(attributes.get("Modality")),
            "description": codes.text(attributes.get("SeriesDescription")),
            "bodySite": codes.body_site(attributes.get("BodyPartExamined"), attributes.get("AnatomicRegionSequence")),
            "laterality": codes.laterality(attributes.get("Laterality"), attributes.get("ImageLaterality")),
            "started": codes.fhir_datetime(
                attributes.get("SeriesDate"),
                attributes.get("SeriesTime"),
                attributes.get("TimezoneOffsetFromUTC"),
                zone,
            ),
        }
        series.update({key: value for key, value in optional.items() if value is not None})
        if endpoint:
            series["endpoint"] = endpoint
        if device:
            series["performer"] = [{"actor": {"reference": f"Device/{device['id']}"}}]
        series["instance"] = [self._instance(attributes)]
        return series

    def _instance(self, attributes: dict[str, Any]) -> dict[str, Any]:
        instance: dict[str, Any] = {
            "uid": attributes["SOPInstanceUID"],
            "sopClass": {"system": codes.RFC_3986, "code": f"urn:oid:{attributes['SOPClassUID']}"},
        }
        number = codes.unsigned(attributes.get("InstanceNumber"))
        if number is not None:
            instance["number"] = number
        title = _title(attributes)
        if title:
            instance["title"] = title
        if extensions := derived.instance_extensions(attributes):
            instance["extension"] = extensions
        return instance


def _title(attributes: dict[str, Any]) -> str | None:
    """FHIR's mapping of instance.title: Content Label | Concept Name > Code Meaning | Document Title | Image Type."""
    concept = attributes.get("ConceptNameCodeSequence") or []
    meaning = concept[0].get("CodeMeaning") if concept else None
    for candidate in (attributes.get("ContentLabel"), meaning, attributes.get("DocumentTitle")):
        if found := codes.text(codes.first(candidate)):
            return found
    image_type = attributes.get("ImageType")
    return codes.text("\\".join(image_type) if isinstance(image_type, list) else image_type)


def _person(value: Any) -> str | None:
    """A DICOM PN (``Family^Given^Middle^Prefix^Suffix``, first component group) as display text."""
    name = codes.first(value)
    if not name:
        return None
    parts = [p for p in name.split("=")[0].split("^") if p]
    if len(parts) >= 2:
        parts = [*parts[1:], parts[0]]
    return codes.text(" ".join(parts))
