"""Ingest clinical records through a mapping: map and validate, then write batches through the one write path.

The one function behind ``POST /ingest/clinical`` and ``fhir-bridge ingest-clinical``. Records are
read, mapped and validated a batch at a time before the write transaction (``interactions.writes.Transaction``)
opens, so a 100,000-row
export streams through in constant memory and the commit lock is held only for database work.

Idempotence: each resource a record makes carries an identifier derived from the record; the
batch's identifiers are looked up in the transaction (a conditional update by identifier, batched),
so a re-push updates, or leaves unchanged, what the first push created. A record is checked in
full (identifiers, references to stored studies) before any of its resources is written, so a
failing record leaves nothing behind.

Modes: per-record (the default) commits each batch and reports each failing record while the
others are stored; ``atomic`` writes everything in one transaction, or nothing when any record fails.
A dry run does all of it, lookups and the store's checks included, in transactions that are rolled
back: each record's result then shows the resources that would be written, and nothing is.

Refused before any record is mapped (``IngestRefused``): a CSV header that lacks a column the mapping
reads, and a ConceptMap the mapping translates with that the store does not hold.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from html import escape
from itertools import chain, islice
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.links import await_study, can_await, study_key, subject_of
from fhir_bridge.ingest.provenance import Source, provenance
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.interactions.writes import UNREAD, Transaction
from fhir_bridge.mapping.clinical.compiler import Mapping
from fhir_bridge.mapping.clinical.mapper import ClinicalMapper, MappedRecord, Produced
from fhir_bridge.mapping.clinical.readers import SourceRecord
from fhir_bridge.mapping.clinical.template import FieldError, PendingLookup, Translation
from fhir_bridge.mapping.conceptmap import Translation as ConceptMapTranslation
from fhir_bridge.mapping.merge import fill_missing
from fhir_bridge.metrics import record_ingest
from fhir_bridge.privacy.profile import AttributePolicy
from fhir_bridge.search.query import parse_search
from fhir_bridge.spec.validation import validate_resource
from fhir_bridge.store.versions import StoredVersion

log = logging.getLogger("fhir_bridge.ingest")
BATCH_SIZE = 200
_MATCHES = 50  # stored resources a lookup considers (accession numbers repeat across patients)
_CHUNK = 100  # ids per Patient search (an _id search is an index lookup however many)
_KEYS = {"identifier:of-type": "accession number", "identifier": "identifier"}


class IngestRefused(ValueError):
    """The input cannot go through the mapping at all (its header lacks columns, a ConceptMap is not stored)."""


@dataclass
class RecordResult:
    """What became of one source record."""

    row: int
    status: str  # created | updated | unchanged | failed | not-written
    line: int | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)  # {"reference", "status"} (+ "resource": dry run)
    errors: list[FieldError] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"row": self.row, "status": self.status}
        if self.line is not None:
            result["line"] = self.line
        if self.resources:
            result["resources"] = self.resources
        if self.errors:
            result["errors"] = [
                {"column": e.column, "reason": e.reason} if e.column else {"reason": e.reason} for e in self.errors
            ]
        return result


@dataclass
class Summary:
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    not_written: int = 0
    provenance: list[str] = field(default_factory=list)

    def add(self, result: RecordResult) -> None:
        self.records += 1
        key = result.status.replace("-", "_")
        setattr(self, key, getattr(self, key) + 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "notWritten": self.not_written,
        }


@dataclass
class _Prepared:
    source: SourceRecord
    mapped: MappedRecord | None
    failure: RecordResult | None = None


@dataclass
class _BatchState:
    """What a batch's transaction knows: stored resources found by identifier, and (fast path) its live Patients."""

    existing: dict[tuple[str, str, str], list[StoredVersion]]
    patients: dict[str, StoredVersion] | None  # None: the careful path (read each one)
    latest: dict[tuple[str, str], StoredVersion] = field(default_factory=dict)  # as this batch left them
    written: list[StoredVersion] = field(default_factory=list)

    def current(self, transaction: Transaction, resource_type: str, resource_id: str) -> StoredVersion | None:
        if (resource_type, resource_id) in self.latest:
            return self.latest[(resource_type, resource_id)]
        if self.patients is None:
            return transaction.current(resource_type, resource_id)
        return self.patients.get(resource_id)

    def known(self, resource_type: str, resource_id: str, match: StoredVersion | None) -> StoredVersion | Any | None:
        """A record's own resource: what the identifier search found; on the careful path, UNREAD (to be read)."""
        if (resource_type, resource_id) in self.latest:
            return self.latest[(resource_type, resource_id)]
        return UNREAD if self.patients is None else match


class _Rollback(Exception):
    """Ends an atomic request's transaction without committing."""


def _lookup_key(criterion: tuple[str, str]) -> str:
    parameter, value = criterion
    if parameter == "identifier" and value.startswith("urn:dicom:uid|"):
        return "StudyInstanceUID"
    return _KEYS.get(parameter, parameter)


class ClinicalIngest:
    """Writes what mappings make of source records, under the site's privacy policy."""

    def __init__(
        self, interactions: FhirInteractions, policy: AttributePolicy, default_system: str, zone: ZoneInfo | None
    ) -> None:
        self.interactions = interactions
        self.policy = policy
        self.default_system = default_system
        self.zone = zone

    def committed(self, provenance_id: str) -> bool:
        """Whether the ingest that was given ``provenance_id`` committed (its Provenance is stored)."""
        return self.interactions.store.read("Provenance", provenance_id) is not None

    def message_key(self, *parts: str) -> str:
        """A Provenance id for a message (e.g. sender, control ID and content): keyed with the site secret
        when there is one, so that it says nothing of the content to whoever lacks the secret."""
        text = "\x00".join(parts)
        pseudonymiser = self.policy.pseudonymiser
        digest = (
            pseudonymiser.keyed_hash("message", text) if pseudonymiser else hashlib.sha256(text.encode()).hexdigest()
        )
        return digest[:64]

    def mapper(self, mapping: Mapping) -> ClinicalMapper:
        return ClinicalMapper(mapping, self.policy, self.default_system, self.zone, self.translations(mapping))

    def translations(self, mapping: Mapping) -> dict[str, Translation]:
        """The stored ConceptMaps the mapping's ``$translate`` names (newest per url); IngestRefused if one lacks."""
        found: dict[str, Translation] = {}
        for url in sorted(mapping.concept_maps):
            bundle = self.interactions.search(
                "ConceptMap", [("url", url), ("_sort", "-_lastUpdated"), ("_count", "1")], base="", strict=True
            )
            entries = [e for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
            if not entries:
                raise IngestRefused(
                    f"the mapping {mapping.name} translates codes with the ConceptMap {url}, which is not stored: "
                    "store it (PUT or POST /fhir/ConceptMap) first; nothing was read"
                )
            found[url] = ConceptMapTranslation(orjson.loads(orjson.dumps(entries[0]["resource"])))  # a Fragment
        return found

    @staticmethod
    def check_header(mapping: Mapping, records: Iterable[SourceRecord]) -> Iterator[SourceRecord]:
        """``records``, once the first one's header (if the format has one) holds every column the mapping reads."""
        iterator = iter(records)
        first = next(iterator, None)
        if first is None:
            return iter(())
        if first.columns is not None:
            missing = mapping.missing_columns(first.columns)
            if missing:
                close = getattr(iterator, "close", None)
                if close is not None:  # end the reader (a generator) while its input is still open
                    close()
                raise IngestRefused(
                    f"the file's header lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                    f"that the mapping {mapping.name} reads; nothing was read"
                )
        return chain([first], iterator)

    def _transaction(self, dry_run: bool) -> AbstractContextManager[Transaction]:
        return self.interactions.dry_run() if dry_run else self.interactions.transaction()

    def ingest(
        self,
        mapping: Mapping,
        records: Iterable[SourceRecord],
        source: Source,
        *,
        atomic: bool = False,
        on_result: Callable[[RecordResult], None] | None = None,
        batch_size: int = BATCH_SIZE,
        provenance_id: str | None = None,
        dry_run: bool = False,
    ) -> Summary:
        """Ingest ``records``; each one's result goes to ``on_result`` (in input order) once it is final.

        ``dry_run``: everything but the commit; each result carries the resources that would be written.
        ``provenance_id`` (atomic ingests only) names the one Provenance the ingest writes, so that a
        sender's retry can be recognised (``committed``) in the same transaction as the data it stored.
        Raises IngestRefused, before any record is mapped, when the input or the store cannot serve the mapping.
        """
        if provenance_id is not None and not atomic:
            raise ValueError("a given provenance_id needs an atomic ingest (one transaction, one Provenance)")
        mapper = self.mapper(mapping)
        records = self.check_header(mapping, records)
        summary = Summary()

        def report(result: RecordResult) -> None:
            summary.add(result)
            if on_result is not None:
                on_result(result)

        batches = self._batches(mapper, records, batch_size)
        if atomic:
            self._atomic(mapping, batches, source, summary, report, dry_run, provenance_id)
        else:
            for batch in batches:
                for result in self._commit(mapping, batch, source, summary, dry_run=dry_run):
                    report(result)
        log.info(
            "clinical ingest%s (%s, mapping %s): %d records, %d created, %d updated, %d unchanged, %d failed",
            " (dry run)" if dry_run else "",
            source.channel,
            mapping.name,
            summary.records,
            summary.created,
            summary.updated,
            summary.unchanged,
            summary.failed,
        )
        path = "mllp" if "MLLP" in source.channel else "clinical"
        for outcome in ("created", "updated", "unchanged", "failed"):
            record_ingest(path, outcome, getattr(summary, outcome))
        return summary

    # before the transaction -------------------------------------------------------------------------
    def _batches(self, mapper: ClinicalMapper, records: Iterable[SourceRecord], size: int) -> Iterator[list[_Prepared]]:
        iterator = iter(records)
        while batch := list(islice(iterator, size)):
            yield [self._prepare(mapper, record) for record in batch]

    @staticmethod
    def _prepare(mapper: ClinicalMapper, record: SourceRecord) -> _Prepared:
        if record.data is None:
            error = FieldError(record.column, record.error or "not a record")
            return _Prepared(record, None, RecordResult(record.row, "failed", record.line, errors=[error]))
        try:
            mapped = mapper.map(record.data)
        except Exception as error:  # e.g. a plugin's record of an unexpected shape: this record fails, not the push
            reason = f"the mapping cannot be applied to this record ({type(error).__name__})"
            return _Prepared(
                record, None, RecordResult(record.row, "failed", record.line, errors=[FieldError(None, reason)])
            )
        if mapped.errors:
            return _Prepared(record, None, RecordResult(record.row, "failed", record.line, errors=mapped.errors))
        if not mapped.produced and mapped.patient is None:
            reason = "the mapping makes nothing of this record (every resource's condition is false)"
            return _Prepared(
                record, None, RecordResult(record.row, "failed", record.line, errors=[FieldError(None, reason)])
            )
        return _Prepared(record, mapped)

    # transactions --------------------------------------------------------------------------------
    def _commit(
        self,
        mapping: Mapping,
        batch: list[_Prepared],
        source: Source,
        summary: Summary,
        fast: bool = True,
        dry_run: bool = False,
    ) -> list[RecordResult]:
        """One transaction for the batch; if the store refuses it, each record alone (to find the one at fault).

        The batch takes the fast path (see ``_write``); a record alone takes the careful one.
        """
        provenance: list[str] = []
        try:
            with self._transaction(dry_run) as transaction:
                results = self._write(
                    transaction, mapping, batch, source, provenance, fast=fast and len(batch) > 1, dry_run=dry_run
                )
            if not dry_run:
                summary.provenance.extend(provenance)
            return results
        except Exception as error:
            if len(batch) == 1:
                _log_failure(error)
                prepared = batch[0]
                reason = f"the store could not write this record ({_describe(error)}); nothing of it was stored"
                return [
                    RecordResult(prepared.source.row, "failed", prepared.source.line, errors=[FieldError(None, reason)])
                ]
        results = []
        for prepared in batch:
            if prepared.failure is not None:
                results.append(prepared.failure)
            else:
                results.extend(self._commit(mapping, [prepared], source, summary, fast=False, dry_run=dry_run))
        return results

    def _atomic(
        self,
        mapping: Mapping,
        batches: Iterator[list[_Prepared]],
        source: Source,
        summary: Summary,
        report: Callable[[RecordResult], None],
        dry_run: bool = False,
        provenance_id: str | None = None,
    ) -> None:
        results: list[RecordResult] = []
        provenance: list[str] = []
        problem: str | None = None
        try:
            with self._transaction(dry_run) as transaction:
                for batch in batches:  # the given Provenance id goes to the transaction's first Provenance
                    given = None if provenance else provenance_id
                    results.extend(
                        self._write(
                            transaction, mapping, batch, source, provenance, fast=False, dry_run=dry_run, given=given
                        )
                    )
                if any(r.status == "failed" for r in results):
                    raise _Rollback
        except _Rollback:
            problem = "not written: the request is atomic and another record failed"
        except Exception as error:
            _log_failure(error)
            problem = f"not written: the store could not write the request ({_describe(error)})"
        if problem is None and not dry_run:
            summary.provenance.extend(provenance)
        for result in results:
            if problem is not None and result.status != "failed":
                result.status, result.resources = "not-written", []
                result.errors = [FieldError(None, problem)]
            report(result)

    def _write(
        self,
        transaction: Transaction,
        mapping: Mapping,
        batch: list[_Prepared],
        source: Source,
        provenance: list[str],
        fast: bool,
        dry_run: bool = False,
        given: str | None = None,
    ) -> list[RecordResult]:
        """Write a batch in ``transaction``.

        The fast path reads what the batch needs in a few searches (its identifiers, its patients) and
        inserts what is not there without a read per resource. Its one assumption, that a derived id
        without a live resource was never used, fails only for a deleted resource pushed again: the
        insert then fails, and ``_commit`` redoes each record on the careful path (a read per resource).
        """
        mapped_records = [p.mapped for p in batch if p.mapped is not None]
        existing = self._resolve(transaction, mapped_records)
        state = _BatchState(existing, self._patients(transaction, mapped_records) if fast else None)
        found: dict[tuple[str, str, str], list[tuple[str, str | None]]] = {}
        results: list[RecordResult] = []
        written = state.written
        for prepared in batch:
            if prepared.mapped is None:
                assert prepared.failure is not None
                results.append(prepared.failure)
                continue
            result = self._record(transaction, prepared, state, found, dry_run)
            results.append(result)
        if written:
            record = self._provenance(mapping, source, batch, written, transaction.recorded, given)
            transaction.create(record, new_id=record["id"])
            provenance.append(record["id"])
        return results

    # one record ----------------------------------------------------------------------------------------
    def _record(
        self,
        transaction: Transaction,
        prepared: _Prepared,
        state: _BatchState,
        found: dict[tuple[str, str, str], list[tuple[str, str | None]]],
        dry_run: bool = False,
    ) -> RecordResult:
        mapped, row, line = prepared.mapped, prepared.source.row, prepared.source.line
        assert mapped is not None
        errors: list[FieldError] = []
        for produced in mapped.produced:
            if produced.identifier is None:
                continue
            system, value = produced.identifier
            matches = state.existing.get((produced.resource_type, system, value), [])
            ids = [m.res_id for m in matches]
            if len(ids) > 1:
                errors.append(
                    FieldError(
                        None,
                        f"{len(ids)} stored {produced.resource_type} resources carry the identifier of this record",
                    )
                )
            elif ids and ids[0] != produced.resource["id"]:
                self._retarget(mapped, produced, ids[0])
        patient = f"Patient/{mapped.patient['id']}" if mapped.patient is not None else None
        unresolved = []
        for lookup in mapped.lookups:
            outcome = self._lookup(transaction, lookup, found, errors, patient, _owner(mapped, lookup))
            if outcome == "deferred":  # the study is not stored yet: kept, linked when it arrives
                _await(mapped, lookup)
            elif outcome == "missing":
                unresolved.append(lookup)
        if errors:
            return RecordResult(row, "failed", line, errors=errors)
        _prune(mapped, unresolved)
        outcomes = []
        if mapped.patient is not None and not any(p.resource_type == "Patient" for p in mapped.produced):
            current = state.current(transaction, "Patient", mapped.patient["id"])
            outcomes.append(self._put(transaction, fill_missing(_alive(current), mapped.patient), state, current))
        for produced in mapped.produced:
            resource = produced.resource
            if produced.resource_type == "Patient":
                current = state.current(transaction, "Patient", resource["id"])
                resource = _overlay(_alive(current), resource)
            else:
                assert produced.identifier is not None  # every resource but the Patient is found by identifier
                matches = state.existing.get((produced.resource_type, *produced.identifier), [])
                current = state.known(produced.resource_type, resource["id"], matches[0] if matches else None)
            outcomes.append(self._put(transaction, resource, state, current))
        statuses = [status for _, status, _ in outcomes]
        status = "created" if "created" in statuses else "updated" if "updated" in statuses else "unchanged"
        resources = [
            {"reference": ref, "status": s, **({"resource": body} if dry_run and body else {})}
            for ref, s, body in outcomes
        ]
        return RecordResult(row, status, line, resources)

    @staticmethod
    def _put(
        transaction: Transaction, resource: dict[str, Any], state: _BatchState, current: StoredVersion | Any | None
    ) -> tuple[str, str, dict[str, Any] | None]:
        """Write one resource through the one write path, with what the batch already knows of it."""
        outcome = transaction.update(resource, None, current)
        stored = outcome.stored
        assert stored is not None
        state.latest[(resource["resourceType"], resource["id"])] = stored
        if not outcome.changed:
            return stored.reference, "unchanged", stored.resource
        state.written.append(stored)
        return stored.reference, "created" if outcome.status == 201 else "updated", stored.resource

    @staticmethod
    def _retarget(mapped: MappedRecord, produced: Produced, resource_id: str) -> None:
        """The resource exists under another id (e.g. created over REST): update that one, and point there."""
        derived = f"{produced.resource_type}/{produced.resource['id']}"
        produced.resource["id"] = resource_id
        for reference in mapped.references.get(derived, []):
            reference["reference"] = f"{produced.resource_type}/{resource_id}"

    def _lookup(
        self,
        transaction: Transaction,
        lookup: PendingLookup,
        found: dict[tuple[str, str, str], list[tuple[str, str | None]]],
        errors: list[FieldError],
        patient: str | None,
        owner: str,
    ) -> str:
        """Fill ``lookup.reference`` by the linking rules (``ingest.links``): "linked", "failed" (an error is
        added), "deferred" (a study not stored yet, of a record with a patient) or "missing" (an error
        unless the lookup is optional)."""
        for criterion in lookup.criteria:
            key = (lookup.resource_type, *criterion)
            if key not in found:
                query = parse_search(lookup.resource_type, [criterion], strict=True)
                matches = transaction.find(query, limit=_MATCHES)
                found[key] = [(m.res_id, subject_of(m.resource)) for m in matches]
            candidates = found[key]
            what = _lookup_key(criterion)
            if candidates and patient is not None and lookup.resource_type == "ImagingStudy":
                own = [c for c in candidates if c[1] == patient]
                if not own:  # named by what identifies a study of someone else
                    reason = f"the ImagingStudy with this {what} is of another patient than the record's"
                    errors.append(FieldError(lookup.column, reason))
                    return "failed"
                candidates = own
            if len(candidates) > 1:
                errors.append(FieldError(lookup.column, f"several {lookup.resource_type} resources have this {what}"))
                return "failed"
            if candidates:
                lookup.reference["reference"] = f"{lookup.resource_type}/{candidates[0][0]}"
                return "linked"
        names_study = any(study_key(criterion) for criterion in lookup.criteria)
        waits = lookup.resource_type == "ImagingStudy" and patient is not None and can_await(owner)
        if waits and not lookup.optional and names_study:
            return "deferred"
        if not lookup.optional:
            keys = " or ".join(_lookup_key(c) for c in lookup.criteria)
            errors.append(FieldError(lookup.column, f"no {lookup.resource_type} with this {keys} is stored (yet)"))
        return "missing"

    @staticmethod
    def _patients(transaction: Transaction, records: list[MappedRecord]) -> dict[str, StoredVersion]:
        """The live stored Patients of a batch's records, by id, in a few searches."""
        ids = sorted({m.patient["id"] for m in records if m.patient is not None})
        live: dict[str, StoredVersion] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            query = parse_search("Patient", [("_id", ",".join(chunk))], strict=True)
            live.update((stored.res_id, stored) for stored in transaction.find(query, limit=len(chunk) + 1))
        return live

    @staticmethod
    def _resolve(
        transaction: Transaction, records: list[MappedRecord]
    ) -> dict[tuple[str, str, str], list[StoredVersion]]:
        """The stored resources carrying each identifier of the batch (a conditional update's match, batched).

        One search per identifier: a single token value is an index lookup, while a search ORing many
        values is compiled into terms the token index cannot serve (it scans every identifier of the
        type: a cost that grows with the store, measured at 0.7 s per 100 values at 70,000 Conditions).
        """
        wanted = sorted(
            {
                (p.resource_type, *p.identifier)
                for mapped in records
                for p in mapped.produced
                if p.identifier is not None
            }
        )
        existing: dict[tuple[str, str, str], list[StoredVersion]] = {}
        for resource_type, system, value in wanted:
            query = parse_search(resource_type, [("identifier", f"{_escape(system)}|{_escape(value)}")], strict=True)
            matches = transaction.find(query, limit=2)
            if matches:
                existing[(resource_type, system, value)] = matches
        return existing

    # Provenance ------------------------------------------------------------------------------------
    def _provenance(
        self,
        mapping: Mapping,
        source: Source,
        batch: list[_Prepared],
        written: list[StoredVersion],
        recorded: str,
        provenance_id: str | None = None,
    ) -> dict[str, Any]:
        """Who sent which records through which mapping: one Provenance per committed batch."""
        rows = [p.source.row for p in batch]
        description = f"records {rows[0]}-{rows[-1]} through the mapping {mapping.name}"
        record = provenance(
            source,
            written,
            recorded,
            activity={"text": f"clinical ingest ({source.channel})"},
            narrative=f"<p>Clinical ingest ({escape(source.channel)}) from {escape(source.sender)}: "
            f"{escape(description)}.</p>",
            entities=[{"role": "source", "what": {"display": description}}],
            security_labels=self.policy.security_labels or None,
            provenance_id=provenance_id,
        )
        validate_resource(record, "Provenance")
        return record


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")


def _alive(current: StoredVersion | None) -> dict[str, Any] | None:
    return current.resource if current is not None and not current.deleted else None


def _overlay(current: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The record's Patient over the stored one: what the record says wins, the rest (e.g. from DICOM) stays."""
    if current is None:
        return new
    return fill_missing(new, current)


def _owner(mapped: MappedRecord, lookup: PendingLookup) -> str:
    """The type of the resource a lookup's reference stands in."""
    return next((p.resource_type for p in mapped.produced if _holds(p.resource, lookup.reference)), "")


def _await(mapped: MappedRecord, lookup: PendingLookup) -> None:
    """Keep the record with a logical reference to its study, tagged as waiting for it (``ingest.links``)."""
    keys = [key for criterion in lookup.criteria if (key := study_key(criterion)) is not None]
    for produced in mapped.produced:
        if _holds(produced.resource, lookup.reference):
            await_study(produced.resource, lookup.reference, keys)
            return


def _holds(value: Any, target: dict[str, Any]) -> bool:
    if value is target:
        return True
    if isinstance(value, dict):
        return any(_holds(v, target) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, target) for v in value)
    return False


def _prune(mapped: MappedRecord, unresolved: list[PendingLookup]) -> None:
    """Leave out the references of optional lookups that found nothing."""
    if not unresolved:
        return
    doomed = {id(lookup.reference) for lookup in unresolved}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if id(v) not in doomed and clean(v) not in ([], {})}
        if isinstance(value, list):
            return [clean(v) for v in value if id(v) not in doomed]
        return value

    for produced in mapped.produced:
        produced.resource = clean(produced.resource)


def _describe(error: Exception) -> str:
    """A store failure for a report: a FhirError's message is ours; other messages can quote data."""
    return error.diagnostics if isinstance(error, FhirError) else type(error).__name__


def _log_failure(error: Exception) -> None:
    log.error(
        "clinical ingest transaction failed (%s); nothing of it was written, at\n%s",
        type(error).__name__,
        "".join(traceback.format_tb(error.__traceback__)),
    )


def results_json(result: RecordResult) -> bytes:
    return orjson.dumps(result.as_json())
