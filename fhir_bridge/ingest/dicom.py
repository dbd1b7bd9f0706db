"""Ingest DICOM instances: de-identify, map, merge into the stored study, write, all in one transaction.

The expensive work (header reading, de-identification, mapping, validation of what each study
adds) happens before the write transaction opens; inside it, only the read-merge-write of each
study and its Provenance, under the store's commit lock. That lock makes the read-modify-write
race-free across processes on both databases, so concurrent senders of one study converge on the
exact union of their instances.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from sqlalchemy.exc import OperationalError

from fhir_bridge.dicom.reader import (
    DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    DicomInstance,
    DicomReadError,
)
from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.links import link_awaiting
from fhir_bridge.ingest.provenance import Source, provenance
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.interactions.writes import Transaction
from fhir_bridge.mapping import derived
from fhir_bridge.mapping.codes import DCM
from fhir_bridge.mapping.dicom import DicomMapper, StudyResources
from fhir_bridge.mapping.merge import StudyMerge, fill_missing
from fhir_bridge.metrics import DICOM_CHANNELS, record_ingest
from fhir_bridge.privacy.profile import PS3_15_ANNEX_E
from fhir_bridge.spec.validation import validate_resource
from fhir_bridge.store.versions import StoredVersion

log = logging.getLogger("fhir_bridge.ingest")

COERCION_OF_DATA_ELEMENTS = 0xB000  # PS3.18 warning: stored, but not exactly as sent


@dataclass
class InstanceOutcome:
    """What became of one instance sent (one STOW-RS part, one file), identified as the sender knows it."""

    index: int
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    failure: int | None = None
    reason: str | None = None
    warning: int | None = None
    study_uid: str | None = None  # as sent (for the CLI's summary)
    series_uid: str | None = None

    @property
    def stored(self) -> bool:
        return self.failure is None


@dataclass
class IngestResult:
    outcomes: list[InstanceOutcome]
    studies: list[str] = field(default_factory=list)  # ImagingStudy ids written or confirmed
    provenance: str | None = None
    write_failed: bool = False  # the transaction failed: nothing was written (worth retrying later)

    @property
    def stored(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.stored)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.stored


@dataclass
class _Study:
    """One study's instances in this request, and what they map to."""

    instances: list[tuple[InstanceOutcome, dict[str, Any]]]
    resources: StudyResources | None = None
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)  # UID as sent -> (keyword, UID stored)


class DicomIngest:
    """Ingests batches of read instances (and read failures) for all DICOM push paths."""

    def __init__(self, interactions: FhirInteractions, mapper: DicomMapper) -> None:
        self.interactions = interactions
        self.mapper = mapper
        self.endpoint = mapper.endpoint()
        if self.endpoint is not None:
            validate_resource(self.endpoint, "Endpoint")

    def ingest(
        self,
        items: Sequence[DicomInstance | DicomReadError],
        source: Source,
        study_uid: str | None = None,
        *,
        provenance_id: str | None = None,
    ) -> IngestResult:
        """Store what can be stored of ``items``; each gets an outcome. ``study_uid``: the one the URL names.

        ``provenance_id``: the id of the request's Provenance, for a caller that must find out later
        whether a batch was committed (the DIMSE spool); a new UUID otherwise.
        """
        outcomes: list[InstanceOutcome] = []
        studies: dict[str, _Study] = {}
        for index, item in enumerate(items):
            outcome = self._outcome(index, item, study_uid)
            outcomes.append(outcome)
            if outcome.stored and isinstance(item, DicomInstance):
                attributes = self.mapper.deidentify(item)
                group = studies.setdefault(attributes["StudyInstanceUID"], _Study([]))
                group.instances.append((outcome, attributes))
                for keyword in item.nonconformant_uids:
                    group.derived[item.attributes[keyword]] = (keyword, attributes[keyword])
        for group in studies.values():
            self._map(group)
        ready = [group for group in studies.values() if group.resources is not None]
        result = IngestResult(outcomes)
        if ready:
            self._write(ready, source, result, provenance_id)
        path = DICOM_CHANNELS.get(source.channel, "folder")
        record_ingest(path, "stored", result.stored)
        record_ingest(path, "failed", result.failed)
        log.info(
            "DICOM ingest (%s): %d instances stored, %d failed, %d studies",
            source.channel,
            result.stored,
            result.failed,
            len(result.studies),
        )
        return result

    def committed(self, provenance_id: str) -> bool:
        """Whether the ingest that was given ``provenance_id`` committed (its Provenance is stored)."""
        return self.interactions.store.read("Provenance", provenance_id) is not None

    def check(self, item: DicomInstance | DicomReadError) -> InstanceOutcome:
        """What ``ingest`` will say of ``item`` before its transaction (read, UID and privacy checks), without
        writing: a receiver that answers first and writes in batches later (DIMSE) answers from it."""
        outcome = self._outcome(0, item, None)
        if outcome.stored and isinstance(item, DicomInstance):
            self.mapper.deidentify(item)
        return outcome

    # before the transaction ---------------------------------------------------------------------
    def _outcome(self, index: int, item: DicomInstance | DicomReadError, study_uid: str | None) -> InstanceOutcome:
        if isinstance(item, DicomReadError):
            return InstanceOutcome(index, item.sop_class_uid, item.sop_instance_uid, item.code, item.reason)
        outcome = InstanceOutcome(
            index, item.sop_class_uid, item.sop_instance_uid, study_uid=item.study_uid, series_uid=item.series_uid
        )
        if study_uid is not None and item.study_uid != study_uid:
            outcome.failure = DOES_NOT_MATCH_SOP_CLASS
            outcome.reason = "StudyInstanceUID differs from the study in the request URL"
        elif item.nonconformant_uids:
            named = ", ".join(item.nonconformant_uids)
            if not self.mapper.policy.derives_uids:
                outcome.failure = DOES_NOT_MATCH_SOP_CLASS
                outcome.reason = f"{named}: not a conformant UID, and no site secret is configured to derive one"
            else:
                outcome.warning = COERCION_OF_DATA_ELEMENTS
                outcome.reason = f"{named}: not a conformant UID; stored as a 2.25 UID derived from it"
        return outcome

    def _map(self, group: _Study) -> None:
        """Map one study; if what it adds is not valid FHIR, find the instances at fault and fail them alone."""
        try:
            group.resources = self._validated(self.mapper.study(a for _, a in group.instances))
            return
        except FhirError:
            pass
        good = []
        for outcome, attributes in group.instances:
            try:
                self._validated(self.mapper.study([attributes]))
                good.append((outcome, attributes))
            except FhirError as error:
                outcome.failure = PROCESSING_FAILURE
                outcome.reason = "not mappable to valid FHIR: " + ", ".join(error.expression or ["?"])
        group.instances = good
        try:
            group.resources = self._validated(self.mapper.study(a for _, a in good)) if good else None
        except FhirError as error:  # valid one by one, not together: fail the study's instances alike
            for outcome, _ in good:
                outcome.failure = PROCESSING_FAILURE
                outcome.reason = "not mappable to valid FHIR: " + ", ".join(error.expression or ["?"])
            group.instances, group.resources = [], None

    @staticmethod
    def _validated(resources: StudyResources) -> StudyResources:
        validate_resource(resources.study, "ImagingStudy")
        validate_resource(resources.patient, "Patient")
        for device in resources.devices:
            validate_resource(device, "Device")
        for resource in resources.derived:
            validate_resource(resource, resource["resourceType"])
        return resources

    # the transaction ---------------------------------------------------------------------------
    def _write(self, groups: list[_Study], source: Source, result: IngestResult, provenance_id: str | None) -> None:
        try:
            with self.interactions.transaction() as transaction:
                targets: list[StoredVersion] = []
                if self.endpoint is not None:
                    targets.append(self._fill(transaction, self.endpoint))
                for group in groups:
                    targets.extend(self._write_study(transaction, group, result))
                studies = [t for t in targets if t.res_type == "ImagingStudy"]
                targets.extend(link_awaiting(transaction, studies))  # clinical records that came before the images
                record = self._provenance(targets, groups, source, transaction.recorded, provenance_id)
                validate_resource(record, "Provenance")
                transaction.create(record, new_id=record["id"])
                result.provenance = record["id"]
        except Exception as error:  # nothing was written: every instance of the request fails alike
            # The type and code location only: a message (e.g. a database error) can quote values.
            log.error(
                "DICOM ingest transaction failed (%s); nothing was written, at\n%s",
                type(error).__name__,
                "".join(traceback.format_tb(error.__traceback__)),
            )
            result.studies.clear()
            result.provenance = None
            result.write_failed = True
            for group in groups:
                for outcome, _ in group.instances:
                    outcome.failure = OUT_OF_RESOURCES if _is_operational(error) else PROCESSING_FAILURE
                    outcome.reason = "the store could not write the request; nothing of it was stored"

    def _write_study(self, transaction: Transaction, group: _Study, result: IngestResult) -> list[StoredVersion]:
        resources = group.resources
        assert resources is not None
        current = transaction.current("ImagingStudy", resources.study["id"])
        merge = StudyMerge(current.resource if current is not None and not current.deleted else None)
        agrees = merge.add(resources.study)
        merged = merge.result()
        if current is not None:  # else ``merged`` is the validated fragment, in canonical order
            validate_resource(merged, "ImagingStudy")
        conflicting = set(resources.conflicting) | (
            {a["SOPInstanceUID"] for _, a in group.instances} if not agrees else set()
        )
        for outcome, attributes in group.instances:
            if attributes["SOPInstanceUID"] in conflicting:
                outcome.warning = COERCION_OF_DATA_ELEMENTS
                outcome.reason = "the instance names another patient than its study, which keeps its first patient"
        written = []
        if merged["subject"]["reference"] == f"Patient/{resources.patient['id']}":
            written.append(self._fill(transaction, resources.patient))
        written.extend(self._fill(transaction, device) for device in resources.devices)
        stored = transaction.update(merged, None, current).stored
        assert stored is not None
        result.studies.append(stored.res_id)
        written.extend(self._write_derived(transaction, resources.derived, merged["subject"]))
        return [*written, stored]

    def _write_derived(
        self, transaction: Transaction, resources: list[dict[str, Any]], subject: dict[str, Any]
    ) -> list[StoredVersion]:
        """What SR, SEG and RTSTRUCT instances add, as the stored study's patient's: replaced when different
        (ids come from SOP Instance UIDs, so a re-push makes no new version); shared ones are filled."""
        derived.assign_subject(resources, subject)
        written = []
        for resource in resources:
            if resource["resourceType"] in derived.SHARED_TYPES:
                written.append(self._fill(transaction, resource))
            else:
                stored = transaction.update(resource).stored
                assert stored is not None
                written.append(stored)
        return written

    @staticmethod
    def _fill(transaction: Transaction, resource: dict[str, Any]) -> StoredVersion:
        """Write ``resource`` filling the gaps of the stored one (no new version when nothing is new)."""
        current = transaction.current(resource["resourceType"], resource["id"])
        merged = fill_missing(current.resource if current is not None and not current.deleted else None, resource)
        stored = transaction.update(merged, None, current).stored
        assert stored is not None
        return stored

    def _provenance(
        self,
        targets: list[StoredVersion],
        groups: list[_Study],
        source: Source,
        recorded: str,
        provenance_id: str | None,
    ) -> dict[str, Any]:
        """Who sent what, when, and what was de-identified how: one Provenance per ingest request."""
        policy = self.mapper.policy
        activity: dict[str, Any] = {"text": f"DICOM ingest ({source.channel})"}
        if policy.pseudonymise:
            activity["coding"] = [
                {"system": DCM, "code": "113100", "display": "Basic Application Confidentiality Profile"}
            ]
        record = provenance(
            source,
            targets,
            recorded,
            activity=activity,
            narrative=_narrative(source, groups, policy.description()),
            entities=[_entity(group) for group in groups],
            security_labels=policy.security_labels if policy.pseudonymise else None,
            provenance_id=provenance_id,
        )
        if not policy.remap_uids:  # (with remapping, every UID sent stays out of the store)
            record["entity"] += [_derivation(*item) for group in groups for item in group.derived.items()]
        if policy.pseudonymise:
            record["policy"] = [PS3_15_ANNEX_E]
        return record


def _entity(group: _Study) -> dict[str, Any]:
    """The source a study's resources came from: the DICOM study (by its stored, possibly remapped, UID)."""
    uid = group.instances[0][1]["StudyInstanceUID"]
    return {
        "role": "source",
        "what": {
            "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
            "display": f"DICOM study: {len(group.instances)} instances received",
        },
    }


def _derivation(sent: str, stored: tuple[str, str]) -> dict[str, Any]:
    """A UID as sent that is not a conformant DICOM UID, and the UID derived from it that was stored."""
    keyword, uid = stored
    return {
        "role": "derivation",
        "what": {
            "identifier": {"type": {"text": f"{keyword} as sent"}, "value": sent},
            "display": f"{keyword} as sent (not a conformant DICOM UID), stored as {uid}",
        },
    }


def _narrative(source: Source, groups: list[_Study], description: list[str]) -> str:
    received = sum(len(group.instances) for group in groups)
    items = "".join(f"<li>{escape(line)}</li>" for line in description)
    return (
        f"<p>{received} DICOM instances of {len(groups)} studies received by {escape(source.channel)} "
        f"from {escape(source.sender)}.</p><ul>{items}</ul>"
    )


def _is_operational(error: Exception) -> bool:
    """A database that is unavailable or full (worth retrying later), rather than bad data."""
    return isinstance(error, OperationalError)
