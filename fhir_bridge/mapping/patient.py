"""The one Patient identity rule of every push path, so a patient's DICOM studies and clinical records meet.

A source patient id (DICOM PatientID, a hospital export's patient number, HL7 PID-3) and the
system of its issuer are pseudonymised by the privacy policy's ``PatientID`` rule, and the
Patient's id is derived from (system, stored value). Two paths that see the same id under the
same issuer therefore land on the same Patient, whichever arrives first.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.mapping import codes
from fhir_bridge.privacy.profile import AttributePolicy


def patient_resource_id(system: str, stored_value: str) -> str:
    """The Patient's id from its identifier as stored (already pseudonymised when pseudonymising)."""
    return codes.resource_id("Patient", system, stored_value)


def stored_patient_value(policy: AttributePolicy, system: str, patient_id: str) -> str | None:
    """A source patient id as stored: the value the DICOM path stores for the same PatientID."""
    return policy.apply({"PatientID": patient_id}, system).get("PatientID")


def patient_identity(policy: AttributePolicy, system: str, patient_id: str) -> tuple[str, dict[str, Any]] | None:
    """(Patient id, Patient.identifier) for a source patient id; None when the policy keeps nothing of it."""
    value = stored_patient_value(policy, system, patient_id)
    if not value:
        return None
    return patient_resource_id(system, value), {"system": system, "value": value}
