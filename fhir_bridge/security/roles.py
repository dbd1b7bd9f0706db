"""Named scope bundles for ``fhir-bridge clients add --role``: what each kind of client needs, no more.

Each role is the set of SMART scopes its job takes, derived where possible from what the access
policy checks (``policy.DICOM_PUSH_TYPES``), so that a change of what a push writes changes the
role with it. tests/test_roles.py drives each role through its job end to end, and checks that it
is refused what lies beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_bridge.security.policy import DICOM_PUSH_TYPES
from fhir_bridge.security.scopes import AUDIT_SCOPE

# What the shipped clinical mappings (mappings/*.yaml) create or update, besides Patient and Provenance;
# a site mapping writing other types needs their scopes too (`--role clinical-sender --scope ...`). A mapping
# that translates codes reads the site's ConceptMaps (terminology, no patient data) on the client's behalf.
CLINICAL_TYPES = ("Condition", "Observation", "DiagnosticReport")


@dataclass(frozen=True)
class Role:
    name: str
    scopes: tuple[str, ...]
    job: str

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


def _writes(types: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"system/{t}.cu" for t in types)


ROLES = {
    role.name: role
    for role in (
        Role("dicom-sender", _writes(DICOM_PUSH_TYPES), "pushes DICOM by STOW-RS (a PACS, a router, a modality)"),
        Role(
            "clinical-sender",
            (*_writes(("Patient", *CLINICAL_TYPES, "Provenance")), "system/ConceptMap.r"),
            "pushes clinical exports through the shipped mappings and site mappings that translate codes with "
            "the site's ConceptMaps (POST /ingest/clinical)",
        ),
        Role(
            "harvester",
            ("system/*.rs",),
            "reads, searches, pages the history, runs Bulk $export and reads the catalogue's counts "
            "(not the audit trail)",
        ),
        Role("auditor", (AUDIT_SCOPE,), "reads and searches the audit trail (AuditEvent) only"),
    )
}


def role_scopes(names: list[str], extra: str | None = None) -> str:
    """The scopes of the named roles and ``extra`` scopes, each once, in order; KeyError names an unknown role."""
    scopes: list[str] = []
    for name in names:
        if name not in ROLES:
            raise KeyError(f"unknown role {name!r}: the roles are {', '.join(ROLES)}")
        scopes += ROLES[name].scopes
    scopes += (extra or "").split()
    return " ".join(dict.fromkeys(scopes))
