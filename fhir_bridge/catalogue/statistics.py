"""Counts and value lists of the store, from the search index tables, as of one commit.

Everything here is a GROUP BY / COUNT(DISTINCT) over index rows (``idx_token``, ``idx_reference``,
``idx_string``, ``idx_date``) and version rows, never a read of resource JSON, so a description of a
store of millions of resources costs a handful of indexed queries. Every query is pinned to one
sequence number with the same validity rule search uses (``seq_from <= S < seq_to``), so the
numbers of one answer agree with each other however many writes happen meanwhile, and the answer
can be cached on that number.

Imaging facts follow the FHIR R4 search parameters: ``ImagingStudy.series.modality`` (``modality``),
``ImagingStudy.series.bodySite`` (``bodysite``), ``ImagingStudy.subject`` (``subject``),
``ImagingStudy.started`` (``started``). R4 has no search parameter for a series' manufacturer, so
manufacturers are those of the Devices a study's series name as performer
(``ImagingStudy.series.performer.actor`` -> ``Device.manufacturer``), which is how the DICOM
mapping records Manufacturer (0008,0070).

These queries read the database directly (through the store's reader engine) rather than through
``Store``: they are aggregates that no FHIR interaction needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, distinct, func, literal, or_, select

from fhir_bridge.search.values import MAX_INDEXED_STRING, normalize_string
from fhir_bridge.store.database import Engines
from fhir_bridge.store.schema import index_valid, version_valid
from fhir_bridge.store.tables import CLOCK, DATE, REFERENCE, RESOURCE, STRING, TOKEN, VERSION

DIMENSIONS = ("sex", "modality", "bodypart", "manufacturer", "condition")
YEAR_MICROS = 31_556_952_000_000  # 365.2425 days
_TOKEN_PARAMS = {"modality": "modality", "bodypart": "bodysite"}

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


# building blocks ----------------------------------------------------------------------------------
def _token_match(table: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """FHIR token syntax: ``code`` or ``system|code`` (``|code``: no system)."""
    conditions = []
    for value in values:
        if "|" in value:
            system, _, code = value.partition("|")
            system_match = table.c.system == system if system else table.c.system.is_(None)
            conditions.append(and_(system_match, table.c.code == code))
        else:
            conditions.append(table.c.code == value)
    return or_(*conditions)


def _study_subject(subject: Any, study_pk: Any, seq: int) -> ColumnElement[bool]:
    """``subject`` (an idx_reference alias) is the Patient of the study ``study_pk``."""
    return and_(
        subject.c.res_pk == study_pk,
        subject.c.res_type == "ImagingStudy",
        subject.c.param == "subject",
        subject.c.target_type == "Patient",
        index_valid(subject, seq),
    )


def _studies(seq: int, criteria: Sequence[Criterion] = ()) -> Select[Any]:
    """ImagingStudies current at ``seq`` (pk, subject Patient id) that meet every criterion."""
    subject = REFERENCE.alias("study_subject")
    joined = VERSION.outerjoin(subject, _study_subject(subject, VERSION.c.res_pk, seq))
    conditions = [VERSION.c.res_type == "ImagingStudy", VERSION.c.deleted.is_(False), version_valid(seq)]
    for dimension, values in criteria:
        if dimension in ("sex", "condition"):
            conditions.append(subject.c.target_id.in_(_subjects_with(dimension, values, seq)))
        else:
            conditions.append(VERSION.c.res_pk.in_(_studies_with(dimension, values, seq)))
    return (
        select(VERSION.c.res_pk.label("pk"), subject.c.target_id.label("subject"))
        .select_from(joined)
        .where(*conditions)
    )


def _studies_with(dimension: str, values: Sequence[str], seq: int) -> Select[Any]:
    """pks of the ImagingStudies with one of ``values`` of a study-level dimension."""
    if dimension in _TOKEN_PARAMS:
        token = TOKEN.alias("study_token")
        return select(token.c.res_pk).where(
            token.c.res_type == "ImagingStudy",
            token.c.param == _TOKEN_PARAMS[dimension],
            _token_match(token, values),
            index_valid(token, seq),
        )
    performer, device, name = _manufacturer_tables()
    names = [normalize_string(v)[:MAX_INDEXED_STRING] for v in values]
    return (
        select(performer.c.res_pk)
        .select_from(_maker_join(performer, performer, device, name, seq))
        .where(*_performers(performer, seq), name.c.value.in_(names))
    )


def _subjects_with(dimension: str, values: Sequence[str], seq: int) -> Select[Any]:
    """ids of the Patients with one of ``values`` of a subject-level dimension."""
    if dimension == "sex":
        gender = TOKEN.alias("gender")
        return (
            select(RESOURCE.c.res_id)
            .join(gender, gender.c.res_pk == RESOURCE.c.pk)
            .where(
                RESOURCE.c.res_type == "Patient",
                gender.c.res_type == "Patient",
                gender.c.param == "gender",
                _token_match(gender, values),
                index_valid(gender, seq),
            )
        )
    subject, code = _condition_tables()
    return (
        select(subject.c.target_id)
        .select_from(subject.join(code, _condition_code_join(subject, code, seq)))
        .where(*_condition_subject(subject, seq), _token_match(code, values))
    )


def _manufacturer_tables() -> tuple[Any, Any, Any]:
    return REFERENCE.alias("performer"), RESOURCE.alias("device"), STRING.alias("maker")


def _performers(performer: Any, seq: int) -> list[ColumnElement[bool]]:
    """Series performers of ImagingStudies that are Devices."""
    return [
        performer.c.res_type == "ImagingStudy",
        performer.c.param == "performer",
        performer.c.target_type == "Device",
        index_valid(performer, seq),
    ]


def _maker_join(left: Any, performer: Any, device: Any, name: Any, seq: int) -> Any:
    """``left`` (holding ``performer``) -> the performing Device -> its manufacturer string."""
    return left.join(device, and_(device.c.res_type == "Device", device.c.res_id == performer.c.target_id)).join(
        name,
        and_(
            name.c.res_pk == device.c.pk,
            name.c.res_type == "Device",
            name.c.param == "manufacturer",
            index_valid(name, seq),
        ),
    )


def _condition_tables() -> tuple[Any, Any]:
    return REFERENCE.alias("condition_subject"), TOKEN.alias("condition_code")


def _condition_subject(subject: Any, seq: int) -> list[ColumnElement[bool]]:
    return [
        subject.c.res_type == "Condition",
        subject.c.param == "subject",
        subject.c.target_type == "Patient",
        index_valid(subject, seq),
    ]


def _condition_code_join(subject: Any, code: Any, seq: int) -> ColumnElement[bool]:
    return and_(
        code.c.res_pk == subject.c.res_pk,
        code.c.res_type == "Condition",
        code.c.param == "code",
        code.c.code.is_not(None),
        index_valid(code, seq),
    )


def _strata_statement(dimension: str, seq: int, matching: Select[Any] | None = None) -> Select[Any]:
    """(system, code, subjects, studies) per value of ``dimension``, among the studies whose pk is in
    ``matching`` (all current studies when None).

    The dimension's own index rows drive the query (an index range scan), each joined to its
    study's subject: no pass over the version table.
    """
    subject = REFERENCE.alias("study_subject")
    if dimension in _TOKEN_PARAMS:
        token = TOKEN.alias("stratum")
        study_pk = token.c.res_pk
        source = token.outerjoin(subject, _study_subject(subject, study_pk, seq))
        where = [
            token.c.res_type == "ImagingStudy",
            token.c.param == _TOKEN_PARAMS[dimension],
            token.c.code.is_not(None),
            index_valid(token, seq),
        ]
        keys, groups = (token.c.system, token.c.code), (token.c.system, token.c.code)
    elif dimension == "manufacturer":
        performer, device, name = _manufacturer_tables()
        study_pk = performer.c.res_pk
        source = _maker_join(performer, performer, device, name, seq).outerjoin(
            subject, _study_subject(subject, study_pk, seq)
        )
        where = _performers(performer, seq)
        # one spelling (the first in sort order) per case- and accent-insensitive name
        keys, groups = (literal(None).label("system"), func.min(name.c.exact)), (name.c.value,)
    elif dimension == "sex":
        patient, gender = RESOURCE.alias("patient"), TOKEN.alias("gender")
        study_pk = subject.c.res_pk
        source = subject.join(
            patient, and_(patient.c.res_type == "Patient", patient.c.res_id == subject.c.target_id)
        ).join(
            gender,
            and_(
                gender.c.res_pk == patient.c.pk,
                gender.c.res_type == "Patient",
                gender.c.param == "gender",
                gender.c.code.is_not(None),
                index_valid(gender, seq),
            ),
        )
        where = [_study_subject(subject, study_pk, seq)]
        keys, groups = (gender.c.system, gender.c.code), (gender.c.system, gender.c.code)
    else:  # condition
        condition_subject, code = _condition_tables()
        study_pk = subject.c.res_pk
        source = subject.join(
            condition_subject,
            and_(
                condition_subject.c.target_id == subject.c.target_id,
                *_condition_subject(condition_subject, seq),
            ),
        ).join(code, _condition_code_join(condition_subject, code, seq))
        where = [_study_subject(subject, study_pk, seq)]
        keys, groups = (code.c.system, code.c.code), (code.c.system, code.c.code)
    if matching is not None:
        where.append(study_pk.in_(matching))
    counts = (func.count(distinct(subject.c.target_id)), func.count(distinct(study_pk)))
    return select(*keys, *counts).select_from(source).where(*where).group_by(*groups)


# queries --------------------------------------------------------------------------------------------
class Statistics:
    """Aggregate reads over one store's database."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    @staticmethod
    def _clock(connection: Connection) -> tuple[int, int | None]:
        seq, last_updated = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated).where(CLOCK.c.id == 1)).one()
        return seq, (last_updated if seq else None)

    def counts(self, criteria: Sequence[Criterion], stratify: str | None = None) -> tuple[int, int, list[Stratum]]:
        """(subjects, studies) meeting ``criteria``, and with ``stratify`` the same per value of that dimension."""
        with self.engines.reader.connect() as connection:
            seq, _ = self._clock(connection)
            if criteria:
                studies = _studies(seq, criteria).subquery("studies")
                subjects, total = connection.execute(
                    select(func.count(distinct(studies.c.subject)), func.count(distinct(studies.c.pk)))
                ).one()
                matching: Select[Any] | None = select(studies.c.pk)
            else:
                subjects, total = self._totals(connection, seq)
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
        with self.engines.reader.connect() as connection:
            seq, modified = self._clock(connection)
            n_subjects, n_studies = self._totals(connection, seq)
            by_value = {
                dimension: {
                    Value(system, str(code)): subjects
                    for system, code, subjects, _ in connection.execute(_strata_statement(dimension, seq))
                }
                for dimension in ("modality", "bodypart", "manufacturer")
            }
            return StoreStatistics(
                seq=seq,
                modified=modified,
                patients=self._patients(connection, seq),
                studies=n_studies,
                study_subjects=n_subjects,
                sexes=self._sexes(connection, seq),
                modalities=by_value["modality"],
                body_parts=by_value["bodypart"],
                manufacturers=by_value["manufacturer"],
                conditions=self._conditions(connection, seq),
                ages=self._ages(connection, seq),
                started=self._started(connection, seq),
            )

    @staticmethod
    def _totals(connection: Connection, seq: int) -> tuple[int, int]:
        """(distinct subjects, studies) of all current ImagingStudies."""
        studies = connection.execute(
            select(func.count()).where(
                VERSION.c.res_type == "ImagingStudy", VERSION.c.deleted.is_(False), version_valid(seq)
            )
        ).scalar_one()
        subject = REFERENCE.alias("study_subject")
        subjects = connection.execute(
            select(func.count(distinct(subject.c.target_id))).where(_study_subject(subject, subject.c.res_pk, seq))
        ).scalar_one()
        return subjects, studies

    @staticmethod
    def _patients(connection: Connection, seq: int) -> int:
        return connection.execute(
            select(func.count()).where(
                VERSION.c.res_type == "Patient", VERSION.c.deleted.is_(False), version_valid(seq)
            )
        ).scalar_one()

    @staticmethod
    def _sexes(connection: Connection, seq: int) -> dict[Value, int]:
        keys = (TOKEN.c.system, TOKEN.c.code)
        rows = connection.execute(
            select(*keys, func.count(distinct(TOKEN.c.res_pk)))
            .where(
                TOKEN.c.res_type == "Patient",
                TOKEN.c.param == "gender",
                TOKEN.c.code.is_not(None),
                index_valid(TOKEN, seq),
            )
            .group_by(*keys)
        )
        return {Value(system, code): n for system, code, n in rows}

    @staticmethod
    def _conditions(connection: Connection, seq: int) -> dict[Value, int]:
        subject, code = _condition_tables()
        keys = (code.c.system, code.c.code)
        rows = connection.execute(
            select(*keys, func.count(distinct(subject.c.target_id)))
            .select_from(subject.join(code, _condition_code_join(subject, code, seq)))
            .where(*_condition_subject(subject, seq))
            .group_by(*keys)
        )
        return {Value(system, code): n for system, code, n in rows}

    @staticmethod
    def _ages(connection: Connection, seq: int) -> dict[int, int]:
        """Patients by age at their first imaging study (birth dates taken at the middle of their
        period: pseudonymised birth dates are a year, or a month)."""
        started, subject = DATE.alias("started"), REFERENCE.alias("study_subject")
        first = (
            select(subject.c.target_id.label("subject"), func.min(started.c.low).label("first"))
            .select_from(started.join(subject, _study_subject(subject, started.c.res_pk, seq)))
            .where(started.c.res_type == "ImagingStudy", started.c.param == "started", index_valid(started, seq))
            .group_by(subject.c.target_id)
            .subquery("first_study")
        )
        patient, born = RESOURCE.alias("patient"), DATE.alias("born")
        age = ((first.c.first - (born.c.low + born.c.high) // 2) // YEAR_MICROS).label("age")
        rows = connection.execute(
            select(age, func.count())
            .select_from(
                first.join(patient, and_(patient.c.res_type == "Patient", patient.c.res_id == first.c.subject)).join(
                    born,
                    and_(
                        born.c.res_pk == patient.c.pk,
                        born.c.res_type == "Patient",
                        born.c.param == "birthdate",
                        index_valid(born, seq),
                    ),
                )
            )
            .group_by(age)
        )
        return {int(years): n for years, n in rows if years is not None and years >= 0}

    @staticmethod
    def _started(connection: Connection, seq: int) -> tuple[int, int] | None:
        """Earliest and latest start, each read by walking the (res_type, param, low) index from one end:
        MIN()/MAX() with the validity condition would visit every row."""
        where = (DATE.c.res_type == "ImagingStudy", DATE.c.param == "started", index_valid(DATE, seq))
        low = connection.execute(select(DATE.c.low).where(*where).order_by(DATE.c.low).limit(1)).scalar()
        high = connection.execute(select(DATE.c.low).where(*where).order_by(DATE.c.low.desc()).limit(1)).scalar()
        return (low, high) if low is not None else None
