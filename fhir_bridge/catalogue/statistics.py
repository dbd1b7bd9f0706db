"""Counts and value lists of the store, as of one commit.

Everything here is a GROUP BY / COUNT(DISTINCT), never a read of resource JSON. The ImagingStudies'
values come from the facts the write path keeps for the current studies (``study_fact``: one narrow
row per study and value, with the study's subject, see ``store/tables.py``), so a count over all
studies reads one table and joins nothing to find a study's subject. Those facts describe the newest
commit only: every answer reads them in one snapshot with the commit clock (``Store.reading(snapshot=True)``)
and pins what it reads of the search index (Patients' genders and birth dates, Conditions, Devices'
manufacturers: ``idx_*`` rows with the validity rule search uses, ``seq_from <= S < seq_to``) to
that clock's seq, so the numbers of one answer agree with each other however many writes happen
meanwhile, and the answer can be cached on that number.

Imaging facts follow the FHIR R4 search parameters: ``ImagingStudy.series.modality`` (``modality``),
``ImagingStudy.series.bodySite`` (``bodysite``), ``ImagingStudy.subject`` (``subject``),
``ImagingStudy.started`` (``started``). R4 has no search parameter for a series' manufacturer, so
manufacturers are those of the Devices a study's series name as performer
(``ImagingStudy.series.performer.actor`` -> ``Device.manufacturer``), which is how the DICOM
mapping records Manufacturer (0008,0070). Annotations follow fhir-bridge's local search parameters
over the segments of SEG and RTSTRUCT instances (``mapping/annotation.py``): ``segmentation`` (the
segmented structure), ``segmentation-method`` (manual, semiautomatic, automatic) and ``segment``
(a study with at least one segment is annotated).

These are aggregates that no FHIR interaction needs. They are composed here over the row sets of
``search.index_rows`` (the studies' facts; the rows of one parameter valid at one seq; the search's
token matcher) and run on one of the store's read connections; this module never names a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, distinct, func, literal, select

from fhir_bridge.search.index_rows import (
    Rows,
    index_rows,
    resource_rows,
    study_fact_rows,
    token_rows,
)
from fhir_bridge.search.parameter_types.token import token_any
from fhir_bridge.search.values import indexed_text
from fhir_bridge.store.store import Store, current_counts

DIMENSIONS = ("sex", "modality", "bodypart", "manufacturer", "condition", "segmentation")
YEAR_MICROS = 31_556_952_000_000  # 365.2425 days
_TOKEN_PARAMS = {
    "modality": "modality",
    "bodypart": "bodysite",
    "segmentation": "segmentation",
    "segmentation-method": "segmentation-method",
}

Criterion = tuple[str, Sequence[str]]  # (dimension, values ORed); criteria of a query are ANDed


@dataclass(frozen=True, order=True)
class Value:
    """A coded value (system may be None) or, for manufacturers, a name."""

    system: str | None
    code: str


@dataclass(frozen=True)
class Stratum:
    value: Value
    subjects: int
    studies: int


@dataclass(frozen=True)
class StoreStatistics:
    """What the catalogue publishes, before small counts are suppressed."""

    seq: int
    modified: int | None  # microseconds since the epoch of the last commit; None for an empty store
    patients: int
    studies: int
    study_subjects: int
    sexes: dict[Value, int]  # Patients per administrative gender
    modalities: dict[Value, int]  # distinct subjects with a study of that modality
    body_parts: dict[Value, int]
    manufacturers: dict[Value, int]
    conditions: dict[Value, int]  # distinct subjects with a Condition of that code
    ages: dict[int, int]  # age in whole years at the first imaging study -> patients
    started: tuple[int, int] | None  # earliest and latest ImagingStudy.started (microseconds)
    segmentations: dict[Value, int] = field(default_factory=dict)  # distinct subjects with a segment of that structure
    segmentation_methods: dict[Value, int] = field(default_factory=dict)  # ... made by that method
    annotated: tuple[int, int] = (0, 0)  # (subjects, studies) with at least one segment


# building blocks ----------------------------------------------------------------------------------
def _study_rows(name: str = "study") -> Rows:
    """The current ImagingStudies, one row per study and subject (``subject``: the Patient id; NULL
    when the study names none; ``started``: its earliest start)."""
    return study_fact_rows("subject", name)


def _studies(seq: int, criteria: Sequence[Criterion] = ()) -> Select[Any]:
    """ImagingStudies current at ``seq`` (pk, subject Patient id) that meet every criterion."""
    studies = _study_rows()
    conditions = list(studies.scope)
    for dimension, values in criteria:
        if dimension in ("sex", "condition"):
            conditions.append(studies.c.subject.in_(_subjects_with(dimension, values, seq)))
        else:
            conditions.append(studies.c.res_pk.in_(_studies_with(dimension, values, seq)))
    return select(studies.c.res_pk.label("pk"), studies.c.subject).select_from(studies.table).where(*conditions)


def _studies_with(dimension: str, values: Sequence[str], seq: int) -> Select[Any]:
    """pks of the ImagingStudies with one of ``values`` of a study-level dimension."""
    if dimension in _TOKEN_PARAMS:
        token = study_fact_rows(_TOKEN_PARAMS[dimension], "study_token")
        return select(token.c.res_pk).where(*token.scope, token_any(token.c.system, token.c.code, values))
    performer, device, name = _manufacturer_rows(seq)
    names = [indexed_text(v) for v in values]
    return (
        select(performer.c.res_pk)
        .select_from(_maker_join(performer.table, performer, device, name))
        .where(*performer.scope, name.c.value.in_(names))
    )


def _subjects_with(dimension: str, values: Sequence[str], seq: int) -> Select[Any]:
    """ids of the Patients with one of ``values`` of a subject-level dimension."""
    if dimension == "sex":
        patient = resource_rows("Patient", None)
        gender = token_rows("Patient", "gender", seq, "gender", values)
        return (
            select(patient.c.res_id)
            .join(gender.table, gender.c.res_pk == patient.c.pk)
            .where(*patient.scope, *gender.scope)
        )
    subject, code = _condition_rows(seq)
    return (
        select(subject.c.target_id)
        .select_from(subject.table.join(code.table, _condition_code_join(subject, code)))
        .where(*subject.scope, token_any(code.c.system, code.c.code, values))
    )


def _manufacturer_rows(seq: int) -> tuple[Rows, Rows, Rows]:
    """The Devices the current studies' series name as performers (``code``: the Device id), the
    Devices, and their manufacturers."""
    performer = study_fact_rows("performer", "performer")
    device = resource_rows("Device", "device")
    name = index_rows("string", "Device", "manufacturer", seq, "maker")
    return performer, device, name


def _maker_join(left: Any, performer: Rows, device: Rows, name: Rows) -> Any:
    """``left`` (holding ``performer``) -> the performing Device -> its manufacturer string."""
    return left.join(device.table, and_(*device.scope, device.c.res_id == performer.c.code)).join(
        name.table, and_(name.c.res_pk == device.c.pk, *name.scope)
    )


def _condition_rows(seq: int) -> tuple[Rows, Rows]:
    """The subject links (to Patients) of Conditions, and their codes."""
    subject = index_rows("reference", "Condition", "subject", seq, "condition_subject", target_type="Patient")
    return subject, token_rows("Condition", "code", seq, "condition_code", coded=True)


def _condition_code_join(subject: Rows, code: Rows) -> ColumnElement[bool]:
    return and_(code.c.res_pk == subject.c.res_pk, *code.scope)


def _strata_statement(dimension: str, seq: int, matching: Select[Any] | None = None) -> Select[Any]:
    """(system, code, subjects, studies) per value of ``dimension``, among the studies whose pk is in
    ``matching`` (all current studies when None).

    Study-level values are the studies' facts, each row with its study's subject: one range of one
    narrow table, no join. Subject-level values (sex, condition) join the studies' subjects to the
    Patients' index rows at ``seq``.
    """
    keys: tuple[Any, ...]
    groups: tuple[Any, ...]
    if dimension in _TOKEN_PARAMS:
        facts = study_fact_rows(_TOKEN_PARAMS[dimension], "stratum")
        source, where = facts.table, [*facts.scope, facts.c.code.is_not(None)]
        keys = groups = (facts.c.system, facts.c.code)
    elif dimension == "manufacturer":
        facts, device, name = _manufacturer_rows(seq)
        source, where = _maker_join(facts.table, facts, device, name), list(facts.scope)
        # one spelling (the first in sort order) per case- and accent-insensitive name
        keys, groups = (literal(None).label("system"), func.min(name.c.exact)), (name.c.value,)
    elif dimension == "sex":
        facts = _study_rows()
        patient = resource_rows("Patient", "patient")
        gender = token_rows("Patient", "gender", seq, "gender", coded=True)
        source = facts.table.join(patient.table, and_(*patient.scope, patient.c.res_id == facts.c.subject)).join(
            gender.table, and_(gender.c.res_pk == patient.c.pk, *gender.scope)
        )
        where = list(facts.scope)
        keys = groups = (gender.c.system, gender.c.code)
    else:  # condition
        facts = _study_rows()
        condition_subject, code = _condition_rows(seq)
        source = facts.table.join(
            condition_subject.table,
            and_(condition_subject.c.target_id == facts.c.subject, *condition_subject.scope),
        ).join(code.table, _condition_code_join(condition_subject, code))
        where = list(facts.scope)
        keys = groups = (code.c.system, code.c.code)
    if matching is not None:
        where.append(facts.c.res_pk.in_(matching))
    counts = (func.count(distinct(facts.c.subject)), func.count(distinct(facts.c.res_pk)))
    return select(*keys, *counts).select_from(source).where(*where).group_by(*groups)


# queries --------------------------------------------------------------------------------------------
class Statistics:
    """Aggregate reads over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _clock(connection: Connection) -> tuple[int, int | None, dict[str, int]]:
        """The newest commit, its time, and the Patients and ImagingStudies current at it (the
        write path's per-type counts, read with the clock)."""
        seq, last_updated, counts = current_counts(connection, ("Patient", "ImagingStudy"))
        return seq, (last_updated if seq else None), counts

    def counts(self, criteria: Sequence[Criterion], stratify: str | None = None) -> tuple[int, int, list[Stratum]]:
        """(subjects, studies) meeting ``criteria``, and with ``stratify`` the same per value of that dimension."""
        with self.store.reading(snapshot=True) as connection:
            seq, _, current = self._clock(connection)
            if criteria:
                studies = _studies(seq, criteria).subquery("studies")
                subjects, total = connection.execute(
                    select(func.count(distinct(studies.c.subject)), func.count(distinct(studies.c.pk)))
                ).one()
                matching: Select[Any] | None = select(studies.c.pk)
            else:
                subjects, total = self._subjects(connection, seq), current["ImagingStudy"]
                matching = None
            strata = []
            if stratify:
                rows = connection.execute(_strata_statement(stratify, seq, matching)).all()
                strata = [
                    Stratum(Value(system, str(code)), n_subjects, n_studies)
                    for system, code, n_subjects, n_studies in rows
                ]
        return subjects, total, strata

    def collect(self) -> StoreStatistics:
        """Everything the catalogue description needs, as of the newest commit."""
        with self.store.reading(snapshot=True) as connection:
            seq, modified, current = self._clock(connection)
            by_value = {
                dimension: {
                    Value(system, str(code)): subjects
                    for system, code, subjects, _ in connection.execute(_strata_statement(dimension, seq))
                }
                for dimension in ("modality", "bodypart", "manufacturer", "segmentation", "segmentation-method")
            }
            return StoreStatistics(
                seq=seq,
                modified=modified,
                patients=current["Patient"],
                studies=current["ImagingStudy"],
                study_subjects=self._subjects(connection, seq),
                sexes=self._sexes(connection, seq),
                modalities=by_value["modality"],
                body_parts=by_value["bodypart"],
                manufacturers=by_value["manufacturer"],
                conditions=self._conditions(connection, seq),
                ages=self._ages(connection, seq),
                started=self._started(connection, seq),
                segmentations=by_value["segmentation"],
                segmentation_methods=by_value["segmentation-method"],
                annotated=self._annotated(connection, seq),
            )

    @staticmethod
    def _subjects(connection: Connection, seq: int) -> int:
        """Distinct subjects of all current ImagingStudies."""
        studies = _study_rows()
        subjects: int = connection.execute(
            select(func.count(distinct(studies.c.subject))).where(*studies.scope)
        ).scalar_one()
        return subjects

    @staticmethod
    def _annotated(connection: Connection, seq: int) -> tuple[int, int]:
        """(distinct subjects, studies) of the ImagingStudies with at least one segment."""
        segment = study_fact_rows("segment", "segment")
        subjects, studies = connection.execute(
            select(func.count(distinct(segment.c.subject)), func.count(distinct(segment.c.res_pk))).where(
                *segment.scope
            )
        ).one()
        return subjects, studies

    @staticmethod
    def _sexes(connection: Connection, seq: int) -> dict[Value, int]:
        gender = token_rows("Patient", "gender", seq, None, coded=True)
        keys = (gender.c.system, gender.c.code)
        rows = connection.execute(
            select(*keys, func.count(distinct(gender.c.res_pk))).where(*gender.scope).group_by(*keys)
        )
        return {Value(system, code): n for system, code, n in rows}

    @staticmethod
    def _conditions(connection: Connection, seq: int) -> dict[Value, int]:
        subject, code = _condition_rows(seq)
        keys = (code.c.system, code.c.code)
        rows = connection.execute(
            select(*keys, func.count(distinct(subject.c.target_id)))
            .select_from(subject.table.join(code.table, _condition_code_join(subject, code)))
            .where(*subject.scope)
            .group_by(*keys)
        )
        return {Value(system, code): n for system, code, n in rows}

    @staticmethod
    def _ages(connection: Connection, seq: int) -> dict[int, int]:
        """Patients by age at their first imaging study (birth dates taken at the middle of their
        period: pseudonymised birth dates are a year, or a month)."""
        studies = _study_rows()
        first = (
            select(studies.c.subject, func.min(studies.c.started).label("first"))
            .where(*studies.scope, studies.c.subject.is_not(None), studies.c.started.is_not(None))
            .group_by(studies.c.subject)
            .subquery("first_study")
        )
        patient, born = resource_rows("Patient", "patient"), index_rows("date", "Patient", "birthdate", seq, "born")
        age = ((first.c.first - (born.c.low + born.c.high) // 2) // YEAR_MICROS).label("age")
        rows = connection.execute(
            select(age, func.count())
            .select_from(
                first.join(patient.table, and_(*patient.scope, patient.c.res_id == first.c.subject)).join(
                    born.table, and_(born.c.res_pk == patient.c.pk, *born.scope)
                )
            )
            .group_by(age)
        )
        return {int(years): n for years, n in rows if years is not None and years >= 0}

    @staticmethod
    def _started(connection: Connection, seq: int) -> tuple[int, int] | None:
        """Earliest and latest start, each read by walking the (res_type, param, low) index from one end:
        MIN()/MAX() with the validity condition would visit every row."""
        started = index_rows("date", "ImagingStudy", "started", seq, None)
        first = select(started.c.low).where(*started.scope)
        low: int | None = connection.execute(first.order_by(started.c.low).limit(1)).scalar()
        high: int | None = connection.execute(first.order_by(started.c.low.desc()).limit(1)).scalar()
        return (low, high) if low is not None and high is not None else None
