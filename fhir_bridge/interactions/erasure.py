"""Erasure of one patient's data for good (GDPR Art. 17): the ``$erase`` operation and ``fhir-bridge patient erase``.

A FHIR delete keeps history (a harvester, vread, ``_history`` still see the versions); erasure
removes them. What is erased is the patient's compartment in the widest sense: the Patient, every
resource any version of which referred to it (ImagingStudy, Observation, DiagnosticReport, ...),
and, again and again, every resource that referred to one of those (the Provenance of a study,
a report on a series), with all their versions and search index rows; a Patient linked to it
(Patient.link: another record of the same person) goes with it, compartment and all. Bulk exports
whose files hold any of them are deleted (their clients export again). Groups that list the
patient are not erased with it (they are many people's data): they are counted in the report as
kept, and still refer to its (erased) id.

The audit trail is not rewritten: it records who did what, and gets one record of the erasure
itself, naming the patient only by a keyed hash (``Patient/hmac:...``), never by its id. Data
pushed again after an erasure (the same DICOM study re-sent by a PACS) is stored again, under
the same ids (they derive from the pseudonyms): erasure is not a block list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from fhir_bridge.bulk.service import BulkExports
from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.store.versions import StoredVersion

# Types reached by a reference that are never erased with the patient (see the module docstring): a
# Group lists many people. (A Patient that refers to the patient does so by Patient.link, which
# links records of the same person: it is erased with it, and so is its compartment.)
KEPT_TYPES = frozenset({"Group"})
PAGE = 1000


@dataclass
class ErasureReport:
    """What an erasure removed, and the keyed name under which the audit trail records it."""

    reference: str  # Patient/hmac:... (or Patient/redacted without a site key)
    resources: int = 0
    versions: int = 0
    index_rows: int = 0
    exports: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    kept_referrers: dict[str, int] = field(default_factory=dict)  # type -> how many still refer to it

    def summary(self) -> str:
        """One line for the audit trail and the command's output: counts, the keyed name, no id."""
        types = ", ".join(f"{name} {count}" for name, count in sorted(self.by_type.items()))
        kept = ", ".join(f"{name} {count}" for name, count in sorted(self.kept_referrers.items()))
        return (
            f"erasure of {self.reference}: {self.resources} resources ({types}), {self.versions} versions, "
            f"{self.index_rows} index rows, {self.exports} bulk exports"
            + (f"; kept, still referring to it: {kept}" if kept else "")
        )


class Erasure:
    """Erases patients' data from the store, the bulk exports and the catalogue's cache."""

    def __init__(
        self,
        interactions: FhirInteractions,
        exports: BulkExports,
        forget_cached: Callable[[], None],
        keyed_hash: Callable[[str], str] | None,
    ) -> None:
        self.interactions = interactions
        self.store = interactions.store
        self.exports = exports
        self.forget_cached = forget_cached
        self.keyed_hash = keyed_hash

    def keyed_reference(self, patient_id: str) -> str:
        """How the audit trail names an erased patient: checkable by whoever holds the site key, nothing more."""
        if self.keyed_hash is None:
            return "Patient/redacted"
        return f"Patient/hmac:{self.keyed_hash(f'Patient/{patient_id}')[:32]}"

    def patients_with_identifier(self, identifier: str) -> list[str]:
        """The ids of the Patients whose identifier matches the token ``identifier`` (``system|value`` or ``value``)."""
        found: list[str] = []
        bundle = self.interactions.search("Patient", [("identifier", identifier), ("_count", str(PAGE))], "")
        # entries carry the stored JSON as is (a fragment); fullUrl names the resource
        found.extend(entry["fullUrl"].rsplit("/", 1)[-1] for entry in bundle.get("entry", []))
        return found

    def compartment(self, patient_id: str) -> tuple[set[tuple[str, str]], Counter[str]]:
        """What erasing ``patient_id`` removes (type, id), and the types of what is kept though it refers to it."""
        erased, kept = self._closure(("Patient", patient_id))
        return erased, Counter(res_type for res_type, _ in kept)

    def compartment_of(self, key: tuple[str, str]) -> set[tuple[str, str]]:
        """``key`` and what refers to it, over and over (the kept types excepted)."""
        return self._closure(key)[0]

    def _closure(self, start: tuple[str, str]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        erased = {start}
        kept: set[tuple[str, str]] = set()
        frontier = set(erased)
        while frontier:
            referring = self.store.referrers(frontier) - erased
            kept |= {key for key in referring if key[0] in KEPT_TYPES}
            frontier = {key for key in referring if key[0] not in KEPT_TYPES}
            erased |= frontier
        return erased, kept

    def erase_patient(self, patient_id: str) -> ErasureReport:
        """Erase the patient and its compartment; 404 when there is no such Patient (deleted ones are erased too)."""
        current: StoredVersion | None = self.store.read("Patient", patient_id)
        if current is None:
            raise FhirError(404, f"there is no Patient {patient_id!r} to erase", code="not-found")
        keys, kept = self.compartment(patient_id)
        exports = self.exports.forget({res_id for _, res_id in keys})  # first: the store's erasure then scrubs the file
        erased = self.store.erase(keys)
        # a write that came between the compartment's reading and the erasure may refer to an erased
        # resource: erase what refers to it too, until nothing new does
        late = {key for key in self.store.referrers(keys) if key[0] not in KEPT_TYPES} - keys
        while late:
            more = set(late)
            for key in late:
                more |= self.compartment_of(key)
            more -= keys
            keys |= more
            exports += self.exports.forget({res_id for _, res_id in more})
            extra = self.store.erase(more)
            erased.resources += extra.resources
            erased.versions += extra.versions
            erased.index_rows += extra.index_rows
            late = {key for key in self.store.referrers(more) if key[0] not in KEPT_TYPES} - keys
        report = ErasureReport(
            self.keyed_reference(patient_id),
            resources=erased.resources,
            versions=erased.versions,
            index_rows=erased.index_rows,
            exports=exports,
            by_type=dict(Counter(res_type for res_type, _ in keys)),
            kept_referrers=dict(kept),
        )
        self.forget_cached()
        return report
