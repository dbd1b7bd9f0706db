"""What counts as a direct identifier in a FHIR resource about a person, and the pseudonym test.

Used twice: the FHIR push path (``ingest.fhir``) removes these elements, and the REST API can be set
to refuse writes of Patient data that still carries them (``FHIR_BRIDGE_REFUSE_IDENTIFIED_PATIENTS``).
"""

from __future__ import annotations

import re
from typing import Any

# Elements of a Patient (and of the people related to one) that name, reach or locate the person.
DIRECT_IDENTIFIERS = ("name", "telecom", "address", "photo", "contact")
PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person"})
# A keyed pseudonym as the Pseudonymiser writes it: the hex of an HMAC-SHA256.
_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")


def is_pseudonym(value: Any) -> bool:
    return isinstance(value, str) and _PSEUDONYM.match(value) is not None


def direct_identifiers(resource: dict[str, Any], where: str = "") -> list[str]:
    """The paths of the direct identifiers a Patient (or a Patient contained in ``resource``) still carries:
    names, telecom, addresses, photos, contacts and identifiers whose value is no keyed pseudonym."""
    found: list[str] = []
    resource_type = resource.get("resourceType")
    prefix = where or str(resource_type)
    if resource_type == "Patient":
        found += [f"{prefix}.{element}" for element in DIRECT_IDENTIFIERS if resource.get(element)]
        for index, identifier in enumerate(resource.get("identifier") or []):
            if isinstance(identifier, dict) and "value" in identifier and not is_pseudonym(identifier["value"]):
                found.append(f"{prefix}.identifier[{index}]")
    for index, contained in enumerate(resource.get("contained") or []):
        if isinstance(contained, dict):
            found += direct_identifiers(contained, f"{prefix}.contained[{index}]")
    return found
