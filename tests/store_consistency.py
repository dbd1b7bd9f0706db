"""``assert_store_consistent``: the invariants of a store, checked in SQL, whatever happened to it.

Meant for after a crash, a kill or a storm of concurrent writes: every version chain is whole,
every resource row names its current version, every index row belongs to a version that exists
(and every version has exactly the index rows its content gives), every local reference of a
current resource resolves, every ImagingStudy agrees with itself, and the per-type counts the write
path keeps (``resource_count``) are the current resources of each type, and the current studies' facts
it keeps (``study_fact``) are those their current contents give. It reads through one
snapshot, so it may run while a server is still writing.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from sqlalchemy import create_engine, select, text

from fhir_bridge.search.index import index_entries
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.store import STUDY, study_facts
from fhir_bridge.store.tables import CLOCK, INDEX_TABLES, RESOURCE, RESOURCE_COUNT, STUDY_FACTS, VERSION
from fhir_bridge.store.versions import format_instant

_BOOKKEEPING = {"id", "res_pk", "res_type", "seq_from", "seq_to"}  # index columns that are not the value
_VERSIONED = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/(\d+)$")
_LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
MAX_REPORTED = 30
_FACT_COLUMNS = [STUDY_FACTS.c[name] for name in ("res_pk", "param", "system", "code", "subject", "started")]


@dataclass(frozen=True)
class _Version:
    seq: int
    res_pk: int
    superseded: int | None
    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: str | None


def assert_store_consistent(database_url: str, *, references: bool = True) -> Counter[str]:
    """Fail with a list of what is wrong; return the number of current (not deleted) resources per type.

    ``references``: also require every local reference of a current resource to resolve (what the
    server enforces by default, FHIR_BRIDGE_ENFORCE_REFERENTIAL_INTEGRITY).
    """
    engines = create_engines(database_url)
    try:
        with engines.reader.connect() as connection:
            if engines.dialect == "postgresql":  # one snapshot for every query below
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            clock = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated)).all()
            kept_counts = dict(connection.execute(select(RESOURCE_COUNT.c.res_type, RESOURCE_COUNT.c.current)).all())
            kept_facts = Counter(tuple(row) for row in connection.execute(select(*_FACT_COLUMNS)).all())
            resources = connection.execute(
                select(
                    RESOURCE.c.pk,
                    RESOURCE.c.res_type,
                    RESOURCE.c.res_id,
                    RESOURCE.c.version,
                    RESOURCE.c.seq,
                    RESOURCE.c.last_updated,
                    RESOURCE.c.deleted,
                    RESOURCE.c.content,
                )
            ).all()
            versions = [
                _Version(*row)
                for row in connection.execute(
                    select(
                        VERSION.c.seq,
                        VERSION.c.res_pk,
                        VERSION.c.superseded,
                        VERSION.c.res_type,
                        VERSION.c.res_id,
                        VERSION.c.version,
                        VERSION.c.last_updated,
                        VERSION.c.deleted,
                        VERSION.c.content,
                    ).order_by(VERSION.c.seq)
                ).all()
            ]
            index_rows = {
                kind: [row._asdict() for row in connection.execute(select(table)).all()]
                for kind, table in INDEX_TABLES.items()
            }
    finally:
        engines.dispose()

    problems: list[str] = []
    if len(clock) != 1:
        problems.append(f"commit_clock has {len(clock)} rows, not 1")
    clock_seq, clock_time = clock[0] if clock else (0, 0)
    by_seq = {v.seq: v for v in versions}
    chains: dict[int, list[_Version]] = defaultdict(list)
    for v in versions:
        chains[v.res_pk].append(v)
        if v.seq > clock_seq or v.last_updated > clock_time:
            problems.append(f"{v.res_type}/{v.res_id} v{v.version} (seq {v.seq}) is beyond the commit clock")
    for earlier, later in pairwise(versions):
        if later.last_updated < earlier.last_updated:
            problems.append(f"lastUpdated goes backwards from seq {earlier.seq} to seq {later.seq}")

    # resources and their version chains ------------------------------------------------------
    current: dict[tuple[str, str], Any] = {}
    for pk, res_type, res_id, version, seq, last_updated, deleted, content in resources:
        current[(res_type, res_id)] = (deleted, version)
        chain = sorted(chains.pop(pk, []), key=lambda v: v.version)
        name = f"{res_type}/{res_id}"
        if not chain:
            problems.append(f"{name} has no version at all")
            continue
        if [v.version for v in chain] != list(range(1, len(chain) + 1)):
            problems.append(f"{name} has versions {[v.version for v in chain]}, not 1..{len(chain)}")
        for older, newer in pairwise(chain):
            if newer.seq <= older.seq or older.superseded != newer.seq:
                problems.append(f"{name} v{older.version} is superseded at {older.superseded}, not at {newer.seq}")
        last = chain[-1]
        if last.superseded is not None:
            problems.append(f"{name}: its newest version v{last.version} is marked superseded")
        if any((v.res_type, v.res_id) != (res_type, res_id) for v in chain):
            problems.append(f"{name}: a version row names another resource")
        if (last.version, last.seq, last.last_updated, last.deleted, last.content) != (
            version,
            seq,
            last_updated,
            deleted,
            content,
        ):
            problems.append(f"{name}: the resource row (v{version}, seq {seq}) is not its newest version row")
        for v in chain:
            problems.extend(_content_problems(v))
    for pk, chain in chains.items():
        problems.append(f"{len(chain)} versions (e.g. {chain[0].res_type}/{chain[0].res_id}) of no resource row {pk}")

    # index rows: each belongs to a version, valid exactly as long as it; each version has its own ---
    stored: dict[tuple[int, str], Counter[tuple]] = defaultdict(Counter)
    for kind, rows in index_rows.items():
        value_columns = [c.name for c in INDEX_TABLES[kind].columns if c.name not in _BOOKKEEPING]
        for row in rows:
            v = by_seq.get(row["seq_from"])
            where = f"idx_{kind} row {row['id']} ({row['res_type']} {row['param']}, seq {row['seq_from']})"
            if v is None:
                problems.append(f"{where} belongs to no version")
                continue
            if v.res_pk != row["res_pk"] or v.res_type != row["res_type"] or v.deleted:
                problems.append(f"{where} does not belong to {v.res_type}/{v.res_id} v{v.version}, written at it")
            if row["seq_to"] != v.superseded:
                problems.append(f"{where} is valid to {row['seq_to']}, its version to {v.superseded}")
            stored[(v.seq, kind)][tuple(row[c] for c in value_columns)] += 1
    for v in versions:
        if v.deleted or v.content is None:
            continue
        for kind, entries in index_entries(orjson.loads(v.content)).items():
            value_columns = [c.name for c in INDEX_TABLES[kind].columns if c.name not in _BOOKKEEPING]
            expected = Counter(tuple(entry.get(c) for c in value_columns) for entry in entries)
            if stored.pop((v.seq, kind), Counter()) != expected:
                problems.append(f"{v.res_type}/{v.res_id} v{v.version}: its idx_{kind} rows differ from its content")
    # (rows left in ``stored`` belong to deleted versions and were reported above)

    # current resources: references resolve, ImagingStudy agrees with itself ---------------------
    counts: Counter[str] = Counter()
    known_versions = {(v.res_type, v.res_id, v.version) for v in versions}
    for _pk, res_type, res_id, _version, _seq, _last_updated, deleted, content in resources:
        if deleted or content is None:
            continue
        counts[res_type] += 1
        resource = orjson.loads(content)
        for reference in _references(resource):
            if m := _VERSIONED.match(reference):
                if (m[1], m[2], int(m[3])) not in known_versions:
                    problems.append(f"{res_type}/{res_id} refers to {reference}, a version that does not exist")
            elif references and (m := _LITERAL.match(reference)):
                target = current.get((m[1], m[2]))
                if target is None or target[0]:
                    problems.append(f"{res_type}/{res_id} refers to {reference}, which does not exist")
        if res_type == STUDY:
            problems.extend(f"ImagingStudy/{res_id}: {p}" for p in imaging_study_problems(resource))
    problems.extend(_study_fact_problems(resources, kept_facts))

    for res_type in sorted(set(counts) | set(kept_counts)):
        if kept_counts.get(res_type, 0) != counts[res_type]:
            problems.append(
                f"resource_count says {kept_counts.get(res_type, 0)} current {res_type}, not {counts[res_type]}"
            )
    assert not problems, f"{len(problems)} inconsistencies in the store:\n" + "\n".join(problems[:MAX_REPORTED])
    return counts


def assert_study_facts_kept(database_url: str) -> None:
    """Fail unless the studies' facts the write path keeps (``study_fact``) are those the current
    ImagingStudies' contents give (what ``assert_store_consistent`` checks of them, alone)."""
    engines = create_engines(database_url)
    try:
        with engines.reader.connect() as connection:
            if engines.dialect == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            kept_facts = Counter(tuple(row) for row in connection.execute(select(*_FACT_COLUMNS)).all())
            resources = connection.execute(
                select(RESOURCE.c.pk, RESOURCE.c.res_type, RESOURCE.c.res_id, RESOURCE.c.deleted, RESOURCE.c.content)
            ).all()
    finally:
        engines.dispose()
    problems = _study_fact_problems([(pk, t, i, None, None, None, d, c) for pk, t, i, d, c in resources], kept_facts)
    assert not problems, "\n".join(problems[:MAX_REPORTED])


def _study_fact_problems(resources: Any, kept_facts: Counter[tuple]) -> list[str]:
    """``study_fact`` against the current ImagingStudies (``resources``: rows of pk, res_type, res_id,
    version, seq, last_updated, deleted, content)."""
    problems: list[str] = []
    current_studies = set()
    for pk, res_type, res_id, _version, _seq, _last_updated, deleted, content in resources:
        if res_type != STUDY or deleted or content is None:
            continue
        current_studies.add(pk)
        facts = Counter(
            (pk, *(fact[c.name] for c in _FACT_COLUMNS[1:]))
            for fact in study_facts(index_entries(orjson.loads(content)))
        )
        if facts != Counter({key: n for key, n in kept_facts.items() if key[0] == pk}):
            problems.append(f"ImagingStudy/{res_id}: its study_fact rows differ from its content")
    strays = {key[0] for key in kept_facts if key[0] not in current_studies}
    if strays:
        problems.append(f"study_fact rows of {len(strays)} resources that are not current ImagingStudies")
    return problems


def _content_problems(v: _Version) -> list[str]:
    name = f"{v.res_type}/{v.res_id} v{v.version}"
    if v.deleted:
        return [] if v.content is None else [f"{name} is a deletion with content"]
    if v.content is None:
        return [f"{name} has no content"]
    resource = orjson.loads(v.content)
    meta = resource.get("meta") or {}
    if (resource.get("resourceType"), resource.get("id")) != (v.res_type, v.res_id):
        return [f"{name} holds {resource.get('resourceType')}/{resource.get('id')}"]
    if meta.get("versionId") != str(v.version) or meta.get("lastUpdated") != format_instant(v.last_updated):
        return [f"{name}: meta {meta.get('versionId')}, {meta.get('lastUpdated')} differs from its row"]
    return []


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            elif key != "contained":
                found.extend(_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_references(item))
    return found


def imaging_study_problems(study: dict[str, Any]) -> list[str]:
    """What is wrong inside one ImagingStudy: counts that disagree with its series and instances, duplicates."""
    problems = []
    series = study.get("series", [])
    if study.get("numberOfSeries") != len(series):
        problems.append(f"numberOfSeries {study.get('numberOfSeries')}, but {len(series)} series")
    instances = [i["uid"] for s in series for i in s.get("instance", [])]
    if study.get("numberOfInstances") != len(instances):
        problems.append(f"numberOfInstances {study.get('numberOfInstances')}, but {len(instances)} instances")
    for s in series:
        if s.get("numberOfInstances") != len(s.get("instance", [])):
            problems.append(f"series {s['uid']}: numberOfInstances {s.get('numberOfInstances')} is not its count")
    if len({s["uid"] for s in series}) != len(series):
        problems.append("a series appears twice")
    if len(set(instances)) != len(instances):
        problems.append("an instance appears twice")
    if not any(i.get("system") == "urn:dicom:uid" for i in study.get("identifier", [])):
        problems.append("no urn:dicom:uid identifier")
    return problems


def database_text(database_url: str) -> str:
    """Every row of every table of the database (the audit trail's too, when it is there), as one string:
    what a scan for identifying values reads."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        names = [
            row[0]
            for row in connection.execute(
                text("SELECT name FROM sqlite_master WHERE type='table'")
                if database_url.startswith("sqlite")
                else text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
            )
        ]
        dumped = [str(connection.execute(text(f'SELECT * FROM "{name}"')).all()) for name in names]
    engine.dispose()
    return "\n".join(dumped)
