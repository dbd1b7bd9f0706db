"""Tier 3: fill the EUCAIM common data model from the store (``fhir-bridge export eucaim-cdm``).

The target is the CDM as EUCAIM's own DDL creates it (EUCAIM/etl-toolset ``Database/
3_init_eucaim_cdm_output.sql``) in a PostgreSQL schema; this module never creates CDM tables, only its
bookkeeping table ``fhir_bridge_cdm_export`` (per dataset: the commit exported up to and fingerprints of
the concepts and pseudonym key used). What it writes:

- ``dataset``: the catalogue's dataset; ``patient``: each subject (a Patient with at least one Condition,
  as federated search counts), birth sex as the CDM code of its EUCAIM concept, deceased or not;
- ``cancer_condition``: each Condition: EUCAIM diagnosis and topography codes, age at diagnosis, offset
  from the first diagnosis; ``procedure`` + ``image_study``: each ImagingStudy, linked to the first
  diagnosis, with its offset from it; ``image_series``: modality, body site, laterality, manufacturer as
  EUCAIM codes (the CDM's code where Focus's SQL looks for another, ``focus-eucaim-cdm``).

Never an absolute date (every DATE column stays empty: dates become offsets from the patient's first
diagnosis, in days where the column can hold them, else weeks, the unit column saying which; units are
UCUM codes unless the site's ConceptMap maps them to EUCAIM concepts) and never a store identifier: ids
are keyed hashes under the site secret, UIDs the site's pseudonymised ones (``Pseudonymiser.uid`` unless
the store already holds remapped UIDs).

Incremental and idempotent: a run walks the store's history from the exported commit to the newest,
rewrites the patients whose Patient, Conditions or ImagingStudies (or their studies' Devices) changed,
and records the new commit, all in one transaction. A change of concepts or key rewrites the dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as upsert

from fhir_bridge.eucaim.concepts import ConceptMaps, Concepts
from fhir_bridge.eucaim.counting import HAS_DIAGNOSIS
from fhir_bridge.eucaim.federated import Dataset
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from fhir_bridge.search.query import parse_search
from fhir_bridge.search.runner import search_page
from fhir_bridge.search.values import date_range
from fhir_bridge.store.store import Store, StoredVersion

UCUM = "http://unitsofmeasure.org"
DAY_MICROS = 86_400_000_000
YEAR_MICROS = 31_556_952_000_000  # 365.2425 days, as the catalogue's ages
CDM_TABLES = ("dataset", "patient", "cancer_condition", "procedure", "image_study", "image_series")
STATE = "fhir_bridge_cdm_export"
FOCUS_BODY_SITE = "series_body_site_code"  # the column Focus's SQL reads; the DDL names it series_body_side_code
BATCH = 100  # patients read and written together
PAGE = 500
DECIMAL_5_2 = Decimal("999.99")


class ExportError(RuntimeError):
    """The export cannot run; the message says what to do."""


@dataclass
class ExportReport:
    full: bool
    from_seq: int
    to_seq: int
    patients_written: int = 0
    patients_deleted: int = 0  # rows removed before (re)writing: changed, deleted or no longer subjects
    conditions: int = 0
    studies: int = 0
    series: int = 0
    offsets_left_empty: int = 0  # offsets too large for their column even in weeks


@dataclass
class _PatientData:
    patient: dict[str, Any]
    conditions: list[dict[str, Any]] = field(default_factory=list)
    studies: list[dict[str, Any]] = field(default_factory=list)


# reading the store ---------------------------------------------------------------------------------
def _all(store: Store, resource_type: str, parameters: list[tuple[str, str]], at_seq: int) -> Iterator[StoredVersion]:
    """Every current match of a search as of ``at_seq``, page by page (keyset on the row's pk)."""
    after: dict[str, Any] | None = None
    while True:
        query = parse_search(
            resource_type, [*parameters, ("_count", str(PAGE))], strict=True, max_count=PAGE, max_or_values=BATCH * 2
        )
        query.at_seq, query.after = at_seq, after
        rows = search_page(store, query)
        for stored, _ in rows[:PAGE]:
            yield stored
        if len(rows) <= PAGE:
            return
        after = {"pk": rows[PAGE - 1][0].pk, "k": []}


def _subject_id(resource: dict[str, Any] | None, element: str = "subject") -> str | None:
    reference = ((resource or {}).get(element) or {}).get("reference") or ""
    kind, _, identifier = reference.rpartition("/")
    return identifier if kind.endswith("Patient") and identifier else None


def _changed_patients(store: Store, since: int, until: int) -> set[str]:
    """Patients (FHIR ids) whose exported data may differ between commits ``since`` and ``until``."""
    patients: set[str] = set()
    devices: set[str] = set()
    cursor = until + 1
    while True:
        versions = store.history(before_seq=cursor, count=PAGE)
        for version in versions:
            if version.seq <= since:
                break
            if version.res_type == "Patient":
                patients.add(version.res_id)
            elif version.res_type in ("Condition", "ImagingStudy"):
                for stored in (version, store.vread(version.res_type, version.res_id, version.version - 1)):
                    if stored is not None and (subject := _subject_id(stored.resource)):
                        patients.add(subject)
            elif version.res_type == "Device":
                devices.add(version.res_id)
        if not versions or versions[-1].seq <= since:
            break
        cursor = versions[-1].seq
    for chunk in _chunks(sorted(devices)):
        references = ",".join(f"Device/{d}" for d in chunk)
        for study in _all(store, "ImagingStudy", [("performer", references)], until):
            if subject := _subject_id(study.resource):
                patients.add(subject)
    return patients


def _chunks(items: Sequence[str], size: int = BATCH) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_patients(store: Store, ids: Sequence[str], at_seq: int) -> tuple[list[_PatientData], dict[str, dict]]:
    """The subjects among ``ids`` (Patients with a Condition) with their Conditions and ImagingStudies,
    and the Devices their series name, as of ``at_seq``."""
    found = {p.res_id: _PatientData(p.resource or {}) for p in _all(store, "Patient", [("_id", ",".join(ids))], at_seq)}
    if not found:
        return [], {}
    subjects = ",".join(f"Patient/{i}" for i in found)
    for condition in _all(store, "Condition", [("subject", subjects)], at_seq):
        if (owner := _subject_id(condition.resource)) in found:
            found[owner].conditions.append(condition.resource or {})
    for study in _all(store, "ImagingStudy", [("subject", subjects)], at_seq):
        if (owner := _subject_id(study.resource)) in found:
            found[owner].studies.append(study.resource or {})
    device_ids = sorted(
        {
            d
            for data in found.values()
            for study in data.studies
            for series in study.get("series") or []
            for d in _device_ids(series)
        }
    )
    devices = {
        device.res_id: device.resource or {}
        for chunk in _chunks(device_ids)
        for device in _all(store, "Device", [("_id", ",".join(chunk))], at_seq)
    }
    return [data for data in found.values() if data.conditions], devices


def _device_ids(series: dict[str, Any]) -> Iterator[str]:
    for performer in series.get("performer") or []:
        reference = ((performer or {}).get("actor") or {}).get("reference") or ""
        kind, _, identifier = reference.rpartition("/")
        if kind.endswith("Device") and identifier:
            yield identifier


def _all_subjects(store: Store, at_seq: int) -> list[str]:
    return [p.res_id for p in _all(store, "Patient", [(HAS_DIAGNOSIS, "false")], at_seq)]


# turning resources into CDM rows -------------------------------------------------------------------
def _instant(value: Any) -> int | None:
    covered = date_range(value) if isinstance(value, str) else None
    return covered[0] if covered else None


def _onset(condition: dict[str, Any]) -> int | None:
    return _instant(
        condition.get("onsetDateTime")
        or (condition.get("onsetPeriod") or {}).get("start")
        or condition.get("recordedDate")
    )


def _codings(concept: Any) -> Iterator[tuple[str | None, str | None]]:
    for coding in (concept or {}).get("coding") or []:
        yield coding.get("system"), coding.get("code")


class _Rows:
    """Builds the rows of one export: the concepts, pseudonyms and units in force."""

    def __init__(self, concepts: Concepts, pseudonymiser: Pseudonymiser, remap_uids: bool, report: ExportReport):
        self.concepts = concepts
        self.pseudonymiser = pseudonymiser
        self.remap_uids = remap_uids
        self.report = report

    def pseudonym(self, kind: str, value: str) -> str:
        return self.pseudonymiser.keyed_hash(f"eucaim-cdm-{kind}", value)

    def uid(self, uid: str) -> str:
        return uid if self.remap_uids else self.pseudonymiser.uid(uid)

    def code(self, codings: Iterable[tuple[str | None, str | None]], parameter: str | None = None) -> str | None:
        """The CDM code of the first coding that maps, preferring concepts of Focus's ``parameter``."""
        mapped = [c for system, code in codings for c in self.concepts.eucaim(system, code)]
        preferred = [c for c in mapped if (k := self.concepts.concepts.get(c)) is not None and k.parameter == parameter]
        chosen = next(iter(preferred or mapped), None)
        return self.concepts.in_cdm(chosen)

    def unit(self, ucum: str) -> str:
        return self.concepts.in_cdm((self.concepts.eucaim(UCUM, ucum) or [ucum])[0]) or ucum

    def offset(self, moment: int | None, anchor: int | None) -> tuple[Decimal | None, str | None]:
        """An offset for a DECIMAL(5,2) column: days where they fit, else weeks, else nothing."""
        if moment is None or anchor is None:
            return None, None
        days = Decimal(moment - anchor) / DAY_MICROS
        for value, unit in ((days, "d"), (days / 7, "wk")):
            rounded = value.quantize(Decimal("0.01"))
            if abs(rounded) <= DECIMAL_5_2:
                return rounded, self.unit(unit)
        self.report.offsets_left_empty += 1
        return None, None

    def patient(self, data: _PatientData, dataset_id: str) -> dict[str, Any]:
        resource = data.patient
        gender = resource.get("gender")
        return {
            "patient_id": self.pseudonym("patient", resource["id"]),
            "dataset_id": dataset_id,
            "patient_birth_sex": self.code([("http://hl7.org/fhir/administrative-gender", gender)], "gender"),
            "patient_deceased": bool(resource.get("deceasedBoolean") or resource.get("deceasedDateTime")),
        }

    def age(self, birth: Any, onset: int | None) -> Decimal | None:
        covered = date_range(birth) if isinstance(birth, str) else None
        if covered is None or onset is None:
            return None
        years = (onset - (covered[0] + covered[1]) // 2) // YEAR_MICROS  # birth dates are a year or a month
        return Decimal(years) if 0 <= years <= 999 else None

    def condition(self, condition: dict[str, Any], patient_id: str, birth: Any, anchor: int | None) -> dict[str, Any]:
        onset = _onset(condition)
        offset = (onset - anchor) // DAY_MICROS if onset is not None and anchor is not None else None
        age = self.age(birth, onset)
        sites = [c for site in condition.get("bodySite") or [] for c in _codings(site)]
        return {
            "patient_id": patient_id,
            "identifier": self.pseudonym("condition", condition["id"]),
            "cancer_condition_age_at_diagnosis": age,
            "cancer_condition_age_unit": self.unit("a") if age is not None else None,
            "cancer_condition_offset_from_primary": offset,
            "cancer_condition_offset_unit": self.unit("d") if offset is not None else None,
            "cancer_condition_code": self.code(_codings(condition.get("code")), "diagnosis"),
            "cancer_condition_topography": self.code(sites, "bodyPart") if sites else None,
        }

    def series(self, series: dict[str, Any], study_uid: str, devices: dict[str, dict]) -> dict[str, Any]:
        makers = [
            c
            for d in _device_ids(series)
            for c in self.concepts.manufacturer((devices.get(d) or {}).get("manufacturer"))
        ]
        modality = series.get("modality") or {}
        body_site = series.get("bodySite") or {}
        laterality = series.get("laterality") or {}
        number = series.get("number")
        return {
            "series_uid": self.uid(series["uid"])[:70],
            "study_uid": study_uid,
            "series_number": number if isinstance(number, int) and number < 2**31 else None,
            "series_description": (series.get("description") or None) and series["description"][:170],
            "series_manufacturer": self.concepts.in_cdm(makers[0]) if makers else None,
            "series_body_side_code": self.code([(body_site.get("system"), body_site.get("code"))], "bodyPart"),
            "series_body_side_laterality": self.code([(laterality.get("system"), laterality.get("code"))]),
            "series_modality": self.code([(modality.get("system"), modality.get("code"))], "modality"),
        }


def _study_uid(study: dict[str, Any]) -> str | None:
    for identifier in study.get("identifier") or []:
        if identifier.get("system") == "urn:dicom:uid" and str(identifier.get("value", "")).startswith("urn:oid:"):
            return identifier["value"].removeprefix("urn:oid:")
    return None


# writing the CDM -----------------------------------------------------------------------------------
def _state_table(metadata: MetaData, schema: str) -> Table:
    return Table(
        STATE,
        metadata,
        Column("dataset_id", String(150), primary_key=True),
        Column("seq", BigInteger, nullable=False),
        Column("concepts", String(64), nullable=False),
        Column("key", String(64), nullable=False),
        Column("exported_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )


class _Target:
    """The CDM tables of one schema, reflected from the database (their DDL is EUCAIM's)."""

    def __init__(self, engine: Engine, schema: str, focus_compat: bool) -> None:
        missing = [t for t in CDM_TABLES if not inspect(engine).has_table(t, schema=schema)]
        if missing:
            raise ExportError(
                f"the EUCAIM CDM is not in schema {schema!r} (no {', '.join(missing)}): create it with EUCAIM's DDL, "
                "EUCAIM/etl-toolset Database/3_init_eucaim_cdm_output.sql"
            )
        self.metadata = MetaData()
        self.state = _state_table(self.metadata, schema)
        self.state.create(engine, checkfirst=True)
        if focus_compat:
            with engine.begin() as connection:
                connection.execute(
                    text(f'ALTER TABLE "{schema}".image_series ADD COLUMN IF NOT EXISTS {FOCUS_BODY_SITE} VARCHAR(70)')
                )
        self.tables = {t: Table(t, self.metadata, autoload_with=engine, schema=schema) for t in CDM_TABLES}
        self.focus_body_site = FOCUS_BODY_SITE in self.tables["image_series"].c

    def insert(self, connection: Connection, name: str, rows: list[dict[str, Any]], returning: str) -> list[int]:
        table = self.tables[name]
        if not rows:
            return []
        statement = insert(table).returning(table.c[returning], sort_by_parameter_order=True)
        return list(connection.execute(statement, rows).scalars())


def _write(
    connection: Connection,
    target: _Target,
    rows: _Rows,
    patients: list[_PatientData],
    devices: dict[str, dict],
    dataset_id: str,
) -> None:
    report = rows.report
    for data in patients:
        patient_row = rows.patient(data, dataset_id)
        target.insert(connection, "patient", [patient_row], "patient_id")
        ordered = sorted(data.conditions, key=lambda c: (_onset(c) is None, _onset(c) or 0, c.get("id", "")))
        anchor = _onset(ordered[0])
        birth = data.patient.get("birthDate")
        condition_ids = target.insert(
            connection,
            "cancer_condition",
            [rows.condition(c, patient_row["patient_id"], birth, anchor) for c in ordered],
            "cancer_condition_id",
        )
        report.patients_written += 1
        report.conditions += len(condition_ids)
        for study in data.studies:
            uid = _study_uid(study)
            if uid is None:
                continue  # a study without its Study Instance UID cannot be a CDM image_study
            offset, unit = rows.offset(_instant(study.get("started")), anchor)
            (procedure_id,) = target.insert(
                connection,
                "procedure",
                [
                    {
                        "cancer_condition_id": condition_ids[0],
                        "procedureidentifier": rows.pseudonym("procedure", study["id"]),
                        "procedure_offset_from_diagnosis": offset,
                        "procedure_offset_unit": unit,
                    }
                ],
                "procedure_id",
            )
            study_uid = rows.uid(uid)[:70]
            (study_id,) = target.insert(
                connection,
                "image_study",
                [
                    {
                        "procedure_id": procedure_id,
                        "patient_id": patient_row["patient_id"],
                        "study_uid": study_uid,
                        "study_offset_from_diagnosis": offset,
                        "study_offset_unit": unit,
                    }
                ],
                "study_id",
            )
            series_rows = []
            for series in study.get("series") or []:
                if not series.get("uid"):
                    continue
                row = {"study_id": study_id, **rows.series(series, study_uid, devices)}
                if target.focus_body_site:
                    row[FOCUS_BODY_SITE] = row["series_body_side_code"]
                series_rows.append(row)
            target.insert(connection, "image_series", series_rows, "series_id")
            report.studies += 1
            report.series += len(series_rows)


def export_cdm(
    store: Store,
    target_url: str,
    dataset: Dataset,
    pseudonymiser: Pseudonymiser,
    *,
    remap_uids: bool,
    schema: str = "eucaim_cdm_output",
    full: bool = False,
    focus_compat: bool = False,
) -> ExportReport:
    """Bring the CDM in ``schema`` of ``target_url`` (PostgreSQL) up to the store's newest commit."""
    engine = create_engine(target_url)
    try:
        if engine.dialect.name != "postgresql":
            raise ExportError(f"the EUCAIM CDM is a PostgreSQL schema; {engine.dialect.name} is not supported")
        target = _Target(engine, schema, focus_compat)
        seq = store.last_seq()
        concepts = ConceptMaps(store).current(seq)
        key = hashlib.sha256(pseudonymiser.keyed_hash("eucaim-cdm-key", "check").encode()).hexdigest()
        with engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"fhir-bridge-cdm:{dataset.id}"))))
            state = connection.execute(
                select(target.state).where(target.state.c.dataset_id == dataset.id)
            ).one_or_none()
            full = full or state is None or state.concepts != concepts.fingerprint or state.key != key
            report = ExportReport(full, 0 if full or state is None else state.seq, seq)
            rows = _Rows(concepts, pseudonymiser, remap_uids, report)
            _upsert_dataset(connection, target, dataset)
            patient = target.tables["patient"]
            if full:
                report.patients_deleted = connection.execute(
                    delete(patient).where(patient.c.dataset_id == dataset.id)
                ).rowcount
                changed = _all_subjects(store, seq)
            else:
                changed = sorted(_changed_patients(store, report.from_seq, seq))
            for chunk in _chunks(changed):
                if not full:
                    report.patients_deleted += connection.execute(
                        delete(patient).where(
                            patient.c.patient_id.in_([rows.pseudonym("patient", p) for p in chunk]),
                            patient.c.dataset_id == dataset.id,
                        )
                    ).rowcount
                subjects, devices = _read_patients(store, chunk, seq)
                _write(connection, target, rows, subjects, devices, dataset.id)
            values = {"seq": seq, "concepts": concepts.fingerprint, "key": key, "exported_at": datetime.now(UTC)}
            statement = upsert(target.state).values(dataset_id=dataset.id, **values)
            connection.execute(statement.on_conflict_do_update(index_elements=["dataset_id"], set_=values))
        return report
    finally:
        engine.dispose()


def _upsert_dataset(connection: Connection, target: _Target, dataset: Dataset) -> None:
    table = target.tables["dataset"]
    values = {"dataset_title": dataset.name[:150], "dataset_description": dataset.description[:500]}
    statement = upsert(table).values(dataset_id=dataset.id, **values)
    connection.execute(statement.on_conflict_do_update(index_elements=["dataset_id"], set_=values))


def summary(report: ExportReport) -> str:
    kind = "full" if report.full else f"incremental from commit {report.from_seq}"
    text = (
        f"EUCAIM CDM {kind} export up to commit {report.to_seq}: {report.patients_written} patients written "
        f"({report.patients_deleted} rows replaced or removed), {report.conditions} conditions, "
        f"{report.studies} studies, {report.series} series"
    )
    if report.offsets_left_empty:
        text += f"; {report.offsets_left_empty} offsets too large for their DECIMAL(5,2) column were left empty"
    return text
