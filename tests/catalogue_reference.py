"""The catalogue's statistics as fhir-bridge computed them before ``study_fact``: joins and
COUNT(DISTINCT)s over the versioned search index, every row pinned to one commit (the module
``catalogue/statistics.py`` was, verbatim but for the names). The tests hold the kept facts' answers
to these, on the same data, after every kind of write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, distinct, func, literal, select

from fhir_bridge.catalogue.statistics import _TOKEN_PARAMS, YEAR_MICROS, Criterion, StoreStatistics, Stratum, Value
from fhir_bridge.search.index_rows import (
    Rows,
    current_versions,
    index_rows,
    resource_rows,
    token_rows,
)
from fhir_bridge.search.parameter_types.token import token_any
from fhir_bridge.search.values import indexed_text
from fhir_bridge.store.store import Store, current_counts


# building blocks ----------------------------------------------------------------------------------
def _subject_rows(seq: int) -> Rows:
    """The subject links (to Patients) of ImagingStudies at ``seq``."""
    return index_rows("reference", "ImagingStudy", "subject", seq, "study_subject", target_type="Patient")


def _study_subject(subject: Rows, study_pk: Any) -> ColumnElement[bool]:
    """``subject`` (from ``_subject_rows``) is the Patient of the study ``study_pk``."""
    return and_(subject.c.res_pk == study_pk, *subject.scope)


def _studies(seq: int, criteria: Sequence[Criterion] = ()) -> Select[Any]:
    """ImagingStudies current at ``seq`` (pk, subject Patient id) that meet every criterion."""
    studies, subject = current_versions("ImagingStudy", seq), _subject_rows(seq)
    joined = studies.table.outerjoin(subject.table, _study_subject(subject, studies.c.res_pk))
    conditions = list(studies.scope)
    for dimension, values in criteria:
        if dimension in ("sex", "condition"):
            conditions.append(subject.c.target_id.in_(_subjects_with(dimension, values, seq)))
        else:
            conditions.append(studies.c.res_pk.in_(_studies_with(dimension, values, seq)))
    return (
        select(studies.c.res_pk.label("pk"), subject.c.target_id.label("subject"))
        .select_from(joined)
        .where(*conditions)
    )


def _studies_with(dimension: str, values: Sequence[str], seq: int) -> Select[Any]:
    """pks of the ImagingStudies with one of ``values`` of a study-level dimension."""
    if dimension in _TOKEN_PARAMS:
        token = token_rows("ImagingStudy", _TOKEN_PARAMS[dimension], seq, "study_token", values)
        return select(token.c.res_pk).where(*token.scope)
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
    """Series performers of ImagingStudies that are Devices, the Devices, and their manufacturers."""
    performer = index_rows("reference", "ImagingStudy", "performer", seq, "performer", target_type="Device")
    device = resource_rows("Device", "device")
    name = index_rows("string", "Device", "manufacturer", seq, "maker")
    return performer, device, name


def _maker_join(left: Any, performer: Rows, device: Rows, name: Rows) -> Any:
    """``left`` (holding ``performer``) -> the performing Device -> its manufacturer string."""
    return left.join(device.table, and_(*device.scope, device.c.res_id == performer.c.target_id)).join(
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

    The dimension's own index rows drive the query (an index range scan), each joined to its
    study's subject: no pass over the version table.
    """
    subject = _subject_rows(seq)
    keys: tuple[Any, ...]
    groups: tuple[Any, ...]
    if dimension in _TOKEN_PARAMS:
        token = token_rows("ImagingStudy", _TOKEN_PARAMS[dimension], seq, "stratum", coded=True)
        study_pk = token.c.res_pk
        source = token.table.outerjoin(subject.table, _study_subject(subject, study_pk))
        where = list(token.scope)
        keys, groups = (token.c.system, token.c.code), (token.c.system, token.c.code)
    elif dimension == "manufacturer":
        performer, device, name = _manufacturer_rows(seq)
        study_pk = performer.c.res_pk
        source = _maker_join(performer.table, performer, device, name).outerjoin(
            subject.table, _study_subject(subject, study_pk)
        )
        where = list(performer.scope)
        # one spelling (the first in sort order) per case- and accent-insensitive name
        keys, groups = (literal(None).label("system"), func.min(name.c.exact)), (name.c.value,)
    elif dimension == "sex":
        patient, gender = (
            resource_rows("Patient", "patient"),
            token_rows("Patient", "gender", seq, "gender", coded=True),
        )
        study_pk = subject.c.res_pk
        source = subject.table.join(patient.table, and_(*patient.scope, patient.c.res_id == subject.c.target_id)).join(
            gender.table, and_(gender.c.res_pk == patient.c.pk, *gender.scope)
        )
        where = [_study_subject(subject, study_pk)]
        keys, groups = (gender.c.system, gender.c.code), (gender.c.system, gender.c.code)
    else:  # condition
        condition_subject, code = _condition_rows(seq)
        study_pk = subject.c.res_pk
        source = subject.table.join(
            condition_subject.table,
            and_(condition_subject.c.target_id == subject.c.target_id, *condition_subject.scope),
        ).join(code.table, _condition_code_join(condition_subject, code))
        where = [_study_subject(subject, study_pk)]
        keys, groups = (code.c.system, code.c.code), (code.c.system, code.c.code)
    if matching is not None:
        where.append(study_pk.in_(matching))
    counts = (func.count(distinct(subject.c.target_id)), func.count(distinct(study_pk)))
    return select(*keys, *counts).select_from(source).where(*where).group_by(*groups)


# queries --------------------------------------------------------------------------------------------
class IndexStatistics:
    """The statistics of one store, from its versioned index (as before ``study_fact``)."""

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
        with self.store.reading() as connection:
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
        with self.store.reading() as connection:
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
        subject = _subject_rows(seq)
        subjects: int = connection.execute(
            select(func.count(distinct(subject.c.target_id))).where(_study_subject(subject, subject.c.res_pk))
        ).scalar_one()
        return subjects

    @staticmethod
    def _annotated(connection: Connection, seq: int) -> tuple[int, int]:
        """(distinct subjects, studies) of the ImagingStudies with at least one segment."""
        segment, subject = index_rows("reference", "ImagingStudy", "segment", seq, "segment"), _subject_rows(seq)
        subjects, studies = connection.execute(
            select(func.count(distinct(subject.c.target_id)), func.count(distinct(segment.c.res_pk)))
            .select_from(segment.table.outerjoin(subject.table, _study_subject(subject, segment.c.res_pk)))
            .where(*segment.scope)
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
        started, subject = index_rows("date", "ImagingStudy", "started", seq, "started"), _subject_rows(seq)
        first = (
            select(subject.c.target_id.label("subject"), func.min(started.c.low).label("first"))
            .select_from(started.table.join(subject.table, _study_subject(subject, started.c.res_pk)))
            .where(*started.scope)
            .group_by(subject.c.target_id)
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
