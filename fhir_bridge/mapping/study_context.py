"""What the mappings of derived content (``report``, ``annotation``) share: the study they belong to.

``StudyContext`` holds the ids of the study and patient an instance belongs to, references and
identifiers, and the tracked finding: a ``BodyStructure`` per Tracking UID, which SR measurements
and SEG segments of the same lesion both point at (``Observation.focus``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from fhir_bridge.mapping import codes

DICOM_UID = "urn:dicom:uid"
DCM_IDENTIFIER_TYPE = codes.DCM
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
IMAGING = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}
TRACKING_UID_TYPE = {"coding": [{"system": codes.DCM, "code": "112040", "display": "Tracking Unique Identifier"}]}
TRACKING_ID_TYPE = {"coding": [{"system": codes.DCM, "code": "112039", "display": "Tracking Identifier"}]}
STUDY_UID_TYPE = {"coding": [{"system": codes.DCM, "code": "110180", "display": "Study Instance UID"}]}


@dataclass(frozen=True)
class StudyContext:
    """What the resources derived from one instance need to know of its study (all as stored)."""

    patient_id: str
    study_id: str
    study_uid: str
    security: tuple[dict[str, str], ...] = ()
    effective: str | None = None  # ImagingStudy.started: when the imaging the content is about took place
    time_zone: ZoneInfo | None = None
    wado_rs_base_url: str | None = None

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.patient_id}"}

    @property
    def study(self) -> dict[str, str]:
        return {"reference": f"ImagingStudy/{self.study_id}"}

    def study_reference(self, study_uid: str) -> dict[str, Any]:
        """This study by literal reference; another by its Study Instance UID (it may not be stored yet, and the
        store refuses dangling literal references)."""
        if study_uid == self.study_uid:
            return self.study
        return {"type": "ImagingStudy", "identifier": {**uid_identifier(study_uid), "type": STUDY_UID_TYPE}}

    def resource(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The start of a resource: type, id and the policy's security labels."""
        resource: dict[str, Any] = {"resourceType": resource_type, "id": resource_id}
        if self.security:
            resource["meta"] = {"security": [dict(label) for label in self.security]}
        return resource


def uid_identifier(uid: str) -> dict[str, str]:
    """An Identifier for a DICOM UID, as ImagingStudy.identifier has it."""
    return {"system": DICOM_UID, "value": f"urn:oid:{uid}"}


def reference(resource: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def tracked_finding(
    context: StudyContext,
    tracking_uid: str,
    tracking_id: str | None = None,
    morphology: dict[str, Any] | None = None,
    location: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The BodyStructure of a finding tracked by its Tracking UID (the HL7 DICOM SR IG's tracking identifiers)."""
    body = context.resource("BodyStructure", codes.resource_id("BodyStructure", tracking_uid))
    identifiers = [{"type": TRACKING_UID_TYPE, **uid_identifier(tracking_uid)}]
    if tracking_id:
        identifiers.append({"type": TRACKING_ID_TYPE, "value": tracking_id})
    body["identifier"] = identifiers
    if morphology:
        body["morphology"] = morphology
    if location:
        body["location"] = location
    body["patient"] = context.subject
    return body
