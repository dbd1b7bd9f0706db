"""The store: reads, history, and the single write path every push path ends in.

Writes happen in a ``WriteSession``. Opening one takes the commit clock's lock, so write
transactions commit one after another and each version's ``seq`` is handed out in commit order:
a harvester that has seen ``seq`` N has seen every write numbered below N, including one that
started early and committed late. The expensive work of a request (parsing, validation) is
done before the session opens, so the lock is held only for the database statements.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Final

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Executable,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import ClauseElement

from fhir_bridge.errors import FhirError
from fhir_bridge.store.database import (
    Engines,
    driver_connection,
    forget_deleted_pages,
    refresh_statistics,
    statistics_due,
)
from fhir_bridge.store.schema import VERSION_COLUMNS
from fhir_bridge.store.tables import (
    CLOCK,
    DATE_WIDTH,
    INDEX_TABLES,
    REFERENCE,
    RESOURCE,
    RESOURCE_COUNT,
    STUDY_FACTS,
    TOKEN,
    URI,
    VERSION,
)
from fhir_bridge.store.versions import StoredVersion, format_instant

# The index rows of a resource by index table (search parameter type); each row names its parameter
# and holds its table's value columns. The search package provides it (``search.index.index_entries``);
# the composition root hands it to the store, which adds the pk, type and validity of each row.
Indexer = Callable[[dict[str, Any]], Mapping[str, list[dict[str, Any]]]]

_RESOURCE_COLUMNS = (
    RESOURCE.c.res_type,
    RESOURCE.c.res_id,
    RESOURCE.c.version,
    RESOURCE.c.seq,
    RESOURCE.c.last_updated,
    RESOURCE.c.deleted,
    RESOURCE.c.content,
    RESOURCE.c.pk,
)
# Statements on the hot paths are built once (building a statement costs more than running it).
_SELECT_CURRENT = select(*_RESOURCE_COLUMNS).where(
    RESOURCE.c.res_type == bindparam("res_type"), RESOURCE.c.res_id == bindparam("res_id")
)
_SELECT_SEQ = select(CLOCK.c.seq).where(CLOCK.c.id == 1)  # built once: its cache key is computed once
_INSERT_RESOURCES = insert(RESOURCE).returning(RESOURCE.c.pk, sort_by_parameter_order=True)
_SELECT_VERSION = select(*VERSION_COLUMNS).where(
    VERSION.c.res_type == bindparam("res_type"),
    VERSION.c.res_id == bindparam("res_id"),
    VERSION.c.version == bindparam("version"),
)


_BATCH = 500  # keys per IN list of an erasure


@dataclass
class Erased:
    """What an erasure removed."""

    resources: int = 0
    versions: int = 0
    index_rows: int = 0


class _Lookup:
    """Marks a previous version not given by the caller of ``WriteSession.put``: the session reads it."""


LOOKUP: Final = _Lookup()


def commit_clock(connection: Connection) -> tuple[int, int]:
    """The newest committed ``seq`` and its ``lastUpdated`` (microseconds), read together."""
    row = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated).where(CLOCK.c.id == 1)).one()
    return row.seq, row.last_updated


def current_counts(connection: Connection, res_types: Collection[str]) -> tuple[int, int, dict[str, int]]:
    """The newest committed ``seq``, its ``lastUpdated`` and how many resources of each of
    ``res_types`` are current at it, read together (one statement: one snapshot)."""
    counts = [
        func.coalesce(
            select(RESOURCE_COUNT.c.current).where(RESOURCE_COUNT.c.res_type == res_type).scalar_subquery(), 0
        )
        for res_type in res_types
    ]
    row = connection.execute(select(CLOCK.c.seq, CLOCK.c.last_updated, *counts).where(CLOCK.c.id == 1)).one()
    return row[0], row[1], dict(zip(res_types, row[2:], strict=True))


def _count_changes(connection: Connection, changes: Mapping[str, int]) -> None:
    """Add ``changes`` (type -> resources more or fewer) to the per-type counts of current resources."""
    upsert = sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert
    for res_type, change in changes.items():
        if change:
            statement = upsert(RESOURCE_COUNT).values(res_type=res_type, current=change)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["res_type"], set_={"current": RESOURCE_COUNT.c.current + change}
                )
            )


STUDY = "ImagingStudy"  # the type whose facts ``study_fact`` keeps
_STUDY_VALUES = frozenset({"modality", "bodysite", "segmentation", "segmentation-method"})  # its token parameters kept


def study_facts(entries: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ``study_fact`` rows (all but ``res_pk``) of an ImagingStudy whose index entries are
    ``entries`` (see ``tables.STUDY_FACTS``): a projection of its index rows, one row per value and
    subject."""
    references, tokens = entries.get("reference", []), entries.get("token", [])
    subjects = list(
        dict.fromkeys(e["target_id"] for e in references if e["param"] == "subject" and e["target_type"] == "Patient")
    ) or [None]
    started = min((e["low"] for e in entries.get("date", []) if e["param"] == "started"), default=None)
    values: dict[tuple[str, str | None, str | None], int | None] = {("subject", None, None): started}
    for entry in tokens:
        if entry["param"] in _STUDY_VALUES:
            values.setdefault((entry["param"], entry["system"], entry["code"]), None)
    for entry in references:
        if entry["param"] == "performer" and entry["target_type"] == "Device":
            values.setdefault(("performer", None, entry["target_id"]), None)
        elif entry["param"] == "segment":
            values.setdefault(("segment", None, None), None)
    return [
        {"param": param, "system": system, "code": code, "subject": subject, "started": first}
        for subject in subjects
        for (param, system, code), first in values.items()
    ]


def _current(row: Sequence[Any]) -> StoredVersion:
    res_type, res_id, version, seq, last_updated, deleted, content, pk = row
    return StoredVersion(res_type, res_id, version, seq, last_updated, bool(deleted), content, "", pk)


@cache
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> tuple[str, tuple[str, ...] | None]:
    compiled = insert(table).values({c: bindparam(c) for c in columns}).compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup) if compiled.positional else None  # type: ignore[arg-type]


@cache
def _select_sql(dialect: Dialect, statement: Executable) -> tuple[str, tuple[str, ...] | None]:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    return compiled.string, tuple(compiled.positiontup) if compiled.positional else None


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows straight to the driver: the index rows of a big transaction number in the tens of
    thousands, and SQLAlchemy's per-row parameter processing would cost more than the insert.
    PostgreSQL gets COPY (a pipelined executemany still sends one statement per row)."""
    columns = tuple(rows[0])
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        names = ", ".join(columns)
        with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(tuple(row[c] for c in columns))
        return
    sql, order = _insert_sql(connection.dialect, table, columns)
    parameters = [tuple(row[c] for c in order) for row in rows] if order else rows
    connection.exec_driver_sql(sql, parameters)


def widen_dates(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Raise the recorded widest date value of each (type, parameter) in ``rows`` (see DATE_WIDTH)."""
    widths: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["res_type"], row["param"])
        widths[key] = max(widths.get(key, 0), row["high"] - row["low"])
    upsert = sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert
    for (res_type, param), width in widths.items():
        statement = upsert(DATE_WIDTH).values(res_type=res_type, param=param, width=width)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["res_type", "param"],
                set_={"width": statement.excluded.width},
                where=statement.excluded.width > DATE_WIDTH.c.width,
            )
        )


class WriteSession:
    """One atomic write transaction; see the module docstring for its ordering guarantee."""

    def __init__(self, connection: Connection, enforce_references: bool, indexer: Indexer) -> None:
        self.connection = connection
        self.enforce_references = enforce_references
        self._indexer = indexer
        clock = connection.execute(
            select(CLOCK.c.seq, CLOCK.c.last_updated).where(CLOCK.c.id == 1).with_for_update()
        ).one()
        self._seq: int = clock.seq
        # lastUpdated never goes backwards in commit order, whatever the wall clock does.
        self.now: int = max(time.time_ns() // 1000, clock.last_updated + 1)
        self._pending: dict[str, list[dict[str, Any]]] = {name: [] for name in INDEX_TABLES}
        self._versions: list[dict[str, Any]] = []
        self._facts: list[dict[str, Any]] = []  # study_fact rows to insert at the next flush
        # resource rows to insert at the next flush, each with the version and index rows waiting for its pk
        self._new_rows: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        self._written: dict[tuple[str, str], StoredVersion] = {}
        self._deleted: set[tuple[str, str]] = set()
        self._references: dict[tuple[str, str], str] = {}  # target -> the resource that points at it
        self._counted: dict[str, int] = {}  # type -> current resources more (or fewer) when this commits

    # reading inside the transaction -------------------------------------------------------
    def current(self, res_type: str, res_id: str) -> StoredVersion | None:
        if (res_type, res_id) in self._written:
            stored = self._written[(res_type, res_id)]
            if stored.pk is None:  # written in this session, row not inserted yet
                self._flush()
                stored = self._written[(res_type, res_id)]
            return stored
        row = self.connection.execute(_SELECT_CURRENT, {"res_type": res_type, "res_id": res_id}).first()
        return _current(row) if row else None

    def rows(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Sequence[Row[Any]]:
        """The rows of a read statement (run with ``parameters``) as this transaction sees them: its own
        writes included (everything buffered is written first), as of ``last_seq`` (conditional writes
        search so)."""
        self._flush()
        return self.connection.execute(statement, parameters).all()

    @property
    def last_seq(self) -> int:
        """The newest seq this session has handed out (the clock's value when nothing was written)."""
        return self._seq

    # writing -----------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def put(
        self, resource: dict[str, Any], method: str, previous: StoredVersion | _Lookup | None = LOOKUP
    ) -> StoredVersion:
        """Store ``resource`` (with ``id`` set) as the next version of its resource.

        ``previous`` is its current version when the caller has read it; None promises that the id
        was never used (a server-assigned UUID, or an id a search found free): no lookup is made.
        """
        res_type, res_id = resource["resourceType"], resource["id"]
        if isinstance(previous, _Lookup) or (previous is not None and previous.pk is None):
            previous = self.current(res_type, res_id)  # (a version written earlier in this session gets its pk)
        version = previous.version + 1 if previous else 1
        if previous is None or previous.deleted:
            self._counted[res_type] = self._counted.get(res_type, 0) + 1
        seq = self._next_seq()
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(self.now)
        resource["meta"] = meta
        content = orjson.dumps(resource).decode()
        values = {"version": version, "seq": seq, "last_updated": self.now, "deleted": False, "content": content}
        pk = self._upsert_current(res_type, res_id, previous, values)
        waiting = self._new_rows[-1][1] if pk is None else []  # rows that get the pk when it is known
        indexed = self._indexer(resource)
        for kind, entries in indexed.items():
            for entry in entries:
                entry["res_pk"] = pk
                entry["seq_from"] = seq
                entry["res_type"] = res_type
                self._pending[kind].append(entry)
                waiting.append(entry)
                if kind == "reference" and entry["target_id"] and entry["url"] is None and entry["target_type"]:
                    self._references.setdefault((entry["target_type"], entry["target_id"]), f"{res_type}/{res_id}")
        if res_type == STUDY:
            for fact in study_facts(indexed):
                fact["res_pk"] = pk
                self._facts.append(fact)
                waiting.append(fact)
        version_row = {"res_type": res_type, "res_id": res_id, "res_pk": pk, "method": method, **values}
        self._versions.append(version_row)
        waiting.append(version_row)
        stored = StoredVersion(res_type, res_id, version, seq, self.now, False, content, method, pk)
        self._written[(res_type, res_id)] = stored
        self._deleted.discard((res_type, res_id))
        return stored

    def delete(self, current: StoredVersion) -> StoredVersion:
        """Record a deletion of ``current`` as a new version; index entries go with it."""
        if current.pk is None:  # created in this session: make sure its row exists
            current = self.current(current.res_type, current.res_id) or current
        version, seq = current.version + 1, self._next_seq()
        if not current.deleted:
            self._counted[current.res_type] = self._counted.get(current.res_type, 0) - 1
        values = {"version": version, "seq": seq, "last_updated": self.now, "deleted": True, "content": None}
        pk = self._upsert_current(current.res_type, current.res_id, current, values)
        self._versions.append(
            {"res_type": current.res_type, "res_id": current.res_id, "res_pk": pk, "method": "DELETE", **values}
        )
        stored = StoredVersion(current.res_type, current.res_id, version, seq, self.now, True, None, "DELETE", pk)
        self._written[(current.res_type, current.res_id)] = stored
        self._deleted.add((current.res_type, current.res_id))
        return stored

    def _upsert_current(
        self, res_type: str, res_id: str, previous: StoredVersion | None, values: dict[str, Any]
    ) -> int | None:
        """The row's pk; None for a new row, inserted in a batch at the next flush."""
        if previous is None:
            self._new_rows.append(({"res_type": res_type, "res_id": res_id, **values}, []))
            return None
        self._flush()
        seq = values["seq"]
        self.connection.execute(update(RESOURCE).where(RESOURCE.c.pk == previous.pk).values(**values))
        # The replaced version and its index rows stay, valid up to this seq (searches pinned
        # to an earlier seq still see them).
        self.connection.execute(
            update(VERSION)
            .where(VERSION.c.res_pk == previous.pk, VERSION.c.superseded.is_(None))
            .values(superseded=seq)
        )
        for table in INDEX_TABLES.values():
            self.connection.execute(
                update(table).where(table.c.res_pk == previous.pk, table.c.seq_to.is_(None)).values(seq_to=seq)
            )
        if res_type == STUDY:  # its current facts go with its current index rows (``put`` adds the new ones)
            self.connection.execute(delete(STUDY_FACTS).where(STUDY_FACTS.c.res_pk == previous.pk))
        return previous.pk

    def _insert_new_rows(self) -> None:
        """Insert the buffered resource rows in one statement and hand their pks to what waits on them."""
        batch, self._new_rows = self._new_rows, []
        pks = self.connection.execute(_INSERT_RESOURCES, [row for row, _ in batch]).scalars().all()
        for (row, waiting), pk in zip(batch, pks, strict=True):
            for dependent in waiting:
                dependent["res_pk"] = pk
            key = (row["res_type"], row["res_id"])
            if key in self._written and self._written[key].pk is None:
                self._written[key] = replace(self._written[key], pk=pk)

    def _flush(self) -> None:
        if self._new_rows:
            self._insert_new_rows()
        for kind, rows in self._pending.items():
            if rows:
                insert_many(self.connection, INDEX_TABLES[kind], rows)
                if kind == "date":
                    widen_dates(self.connection, rows)
                rows.clear()
        if self._versions:
            insert_many(self.connection, VERSION, self._versions)
            self._versions.clear()
        if self._facts:
            insert_many(self.connection, STUDY_FACTS, self._facts)
            self._facts.clear()

    def _check_references(self) -> None:
        """Refuse dangling local references (as HAPI FHIR's JPA server does by default)."""
        targets = [t for t in self._references if t not in self._written or t in self._deleted]
        if targets:
            found = {
                tuple(row)
                for chunk in range(0, len(targets), 500)
                for row in self.connection.execute(
                    select(RESOURCE.c.res_type, RESOURCE.c.res_id).where(
                        tuple_(RESOURCE.c.res_type, RESOURCE.c.res_id).in_(targets[chunk : chunk + 500]),
                        RESOURCE.c.deleted.is_(False),
                    )
                )
            }
            for target in targets:
                if target not in found:
                    source = self._references[target]
                    raise FhirError(
                        422 if target not in self._deleted else 409,
                        f"{source} refers to {target[0]}/{target[1]}, which does not exist",
                        code="not-found",
                        expression=source,
                    )
        for res_type, res_id in self._deleted:
            referrer = self.connection.execute(
                select(RESOURCE.c.res_type, RESOURCE.c.res_id)
                .join(REFERENCE, REFERENCE.c.res_pk == RESOURCE.c.pk)
                .where(
                    REFERENCE.c.target_type == res_type,
                    REFERENCE.c.target_id == res_id,
                    REFERENCE.c.url.is_(None),
                    REFERENCE.c.seq_to.is_(None),
                    RESOURCE.c.deleted.is_(False),
                    or_(RESOURCE.c.res_type != res_type, RESOURCE.c.res_id != res_id),
                )
                .limit(1)
            ).first()
            if referrer:
                raise FhirError(
                    409,
                    f"cannot delete {res_type}/{res_id}: {referrer[0]}/{referrer[1]} refers to it",
                    code="conflict",
                )

    def finish(self) -> None:
        self._flush()
        if self.enforce_references:
            self._check_references()
        _count_changes(self.connection, self._counted)
        self.connection.execute(update(CLOCK).where(CLOCK.c.id == 1).values(seq=self._seq, last_updated=self.now))


def _history_conditions(
    res_type: str | None, res_id: str | None, since: int | None, at: tuple[int, int] | None
) -> list[ColumnElement[bool]]:
    """What a history (instance, type or system) selects: ``_since`` and ``_at`` of http.html#history."""
    scope: list[ColumnElement[bool]] = []
    if res_type:
        scope.append(VERSION.c.res_type == res_type)
    if res_id:
        scope.append(VERSION.c.res_id == res_id)
    conditions = list(scope)
    if since is not None:
        conditions.append(VERSION.c.last_updated >= since)
    if at is not None:
        current_at_start = (
            select(func.max(VERSION.c.seq))
            .where(VERSION.c.last_updated <= at[0], *scope)
            .group_by(VERSION.c.res_type, VERSION.c.res_id)
        )
        conditions.append(or_(VERSION.c.seq.in_(current_at_start), VERSION.c.last_updated.between(*at)))
    return conditions


class Store:
    """Reads and writes FHIR resources over the store's tables.

    It knows versions, the commit clock and its tables, not search: the index rows of a version come
    from the ``indexer`` it is given, and searches are compiled by the search package and run
    through ``rows``/``scalar`` (``WriteSession.rows`` inside a write transaction).
    """

    def __init__(self, engines: Engines, *, indexer: Indexer, enforce_references: bool = True) -> None:
        self.engines = engines
        self.indexer = indexer
        self.enforce_references = enforce_references
        self._statistics = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[WriteSession]:
        """An atomic write transaction: everything in it commits together or not at all."""
        with self.engines.writer.begin() as connection:
            session = WriteSession(connection, self.enforce_references, self.indexer)
            before = session.last_seq
            yield session
            session.finish()
        if statistics_due(before, session.last_seq):
            threading.Thread(target=self.refresh_statistics, name="fhir-bridge-analyze", daemon=True).start()

    def refresh_statistics(self) -> None:
        """Let the query planner see the data as it is now (see ``statistics_due``)."""
        if not self._statistics.acquire(blocking=False):
            return  # one refresh at a time is enough
        try:
            refresh_statistics(self.engines)
        finally:
            self._statistics.release()

    @contextmanager
    def reading(self, snapshot: bool = False) -> Iterator[Connection]:
        """A connection for reads (several statements, e.g. the catalogue's aggregates at one seq).

        ``snapshot``: every statement sees the same commit (PostgreSQL: REPEATABLE READ; SQLite's
        read transaction always does), for reads of what is kept as of the newest commit only
        (``resource_count``, ``study_fact``) together with the clock."""
        with self.engines.reader.connect() as connection:
            if snapshot and self.engines.dialect == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            yield connection

    def rows(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Sequence[Row[Any]]:
        """The rows of a read statement run with ``parameters`` (a search compiled by the search package,
        for one)."""
        with self.reading() as connection:
            return connection.execute(statement, parameters).all()

    def rows_at_newest(
        self, build: Callable[[int], tuple[Executable, Mapping[str, Any] | None]]
    ) -> tuple[int, Sequence[Row[Any]]]:
        """The newest commit's sequence number and the rows of the statement ``build(seq)`` gives, run
        with the parameters it gives, in one read transaction (one connection and one round of
        BEGIN/ROLLBACK where two reads took two)."""
        with self.reading() as connection:
            seq: int = connection.execute(_SELECT_SEQ).scalar_one()
            return seq, connection.execute(*build(seq)).all()

    def scalar(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Any:
        """The one value of a read statement run with ``parameters`` (a count)."""
        with self.reading() as connection:
            return connection.execute(statement, parameters).scalar_one()

    def explain(self, statement: ClauseElement) -> tuple[str, list[str]]:
        """The SQL of a read statement and the database's plan for it (PostgreSQL: with actual timings)."""
        engine = self.engines.reader
        sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if self.engines.dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
        with self.reading() as connection:
            rows = connection.exec_driver_sql(prefix + sql).all()
        plan = [" | ".join(str(v) for v in row) if self.engines.dialect == "sqlite" else row[0] for row in rows]
        return sql, plan

    def estimate_rows(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> int | None:
        """How many rows the query planner expects ``statement`` (run with ``parameters``) to return
        (PostgreSQL, from its statistics: no row is read); None where the database gives no estimate (SQLite)."""
        if self.engines.dialect != "postgresql":
            return None
        with self.reading() as connection:
            compiled = statement.compile(dialect=connection.dialect)  # type: ignore[attr-defined]
            values = compiled.construct_params(dict(parameters or {}))
            plan = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), values).scalar_one()
        return int(plan[0]["Plan"]["Plan Rows"])

    @property
    def reads_never_wait(self) -> bool:
        """Whether a read by id can run on the event loop: SQLite in WAL mode reads a few pages of a
        local file and never waits for a lock; PostgreSQL's reads are network round trips."""
        return self.engines.dialect == "sqlite"

    def read(self, res_type: str, res_id: str) -> StoredVersion | None:
        row = self._first(_SELECT_CURRENT, {"res_type": res_type, "res_id": res_id})
        return _current(row) if row else None

    def _first(self, statement: Executable, parameters: dict[str, Any]) -> Sequence[Any] | None:
        """The first row of one read statement (built once, at import), run on the driver itself.

        One statement needs no transaction of its own (it is atomic alone), and SQLAlchemy's work
        per execution (BEGIN, the statement, ROLLBACK, their events) was most of a read by id's CPU.
        On PostgreSQL it runs in autocommit (``database.driver_connection``): CPU 319 -> 184 us, wall
        656 -> 371 us a read in process.
        """
        engine = self.engines.reader
        with driver_connection(engine) as driver:
            cursor = driver.cursor()
            try:
                sql, order = _select_sql(engine.dialect, statement)
                cursor.execute(sql, tuple(parameters[name] for name in order) if order else parameters)
                return cursor.fetchone()
            finally:
                cursor.close()

    def vread(self, res_type: str, res_id: str, version: int) -> StoredVersion | None:
        row = self._first(_SELECT_VERSION, {"res_type": res_type, "res_id": res_id, "version": version})
        return StoredVersion.of_row(row) if row else None

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since: int | None = None,
        at: tuple[int, int] | None = None,
        before_seq: int | None = None,
        after_seq: int | None = None,
        count: int = 20,
        oldest_first: bool = False,
    ) -> list[StoredVersion]:
        """Versions newest first (``oldest_first``: oldest first), below ``before_seq`` and above
        ``after_seq`` (the paging positions).

        ``at`` (an instant range) keeps the versions that were current at some point within it.
        """
        conditions = _history_conditions(res_type, res_id, since, at)
        if before_seq is not None:
            conditions.append(VERSION.c.seq < before_seq)
        if after_seq is not None:
            conditions.append(VERSION.c.seq > after_seq)
        if oldest_first and since is not None and not after_seq:
            # The oldest versions since an instant (a history's last page): without a lower bound on
            # seq the planner walks the seq order from the store's oldest version to reach the recent
            # ones. The bound is the first seq among them, found in the lastUpdated index's range
            # (`seq + 0`: a bare min(seq) is answered by that same walk); it costs what the history's
            # total, counted on the same first page, costs.
            first = select(func.min(VERSION.c.seq + 0)).where(VERSION.c.last_updated >= since)
            if res_type:
                first = first.where(VERSION.c.res_type == res_type)
            if res_id:
                first = first.where(VERSION.c.res_id == res_id)
            conditions.append(VERSION.c.seq >= first.scalar_subquery())
        order = VERSION.c.seq.asc() if oldest_first else VERSION.c.seq.desc()
        statement = select(*VERSION_COLUMNS).where(*conditions).order_by(order).limit(count)
        with self.reading() as connection:
            return [StoredVersion.of_row(row) for row in connection.execute(statement).all()]

    def count_history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        since: int | None = None,
        *,
        at: tuple[int, int] | None = None,
        up_to_seq: int | None = None,
    ) -> int:
        """How many versions ``history`` would list (up to ``up_to_seq``, the commit a history is pinned to)."""
        conditions = _history_conditions(res_type, res_id, since, at)
        if up_to_seq is not None:
            conditions.append(VERSION.c.seq <= up_to_seq)
        with self.reading() as connection:
            count: int = connection.execute(select(func.count()).select_from(VERSION).where(*conditions)).scalar_one()
            return count

    def meta_in_use(self, res_type: str | None = None) -> tuple[dict[str, list[tuple[Any, ...]]], int | None]:
        """The tags, security labels (system, code) and profiles (url,) on current resources (of
        ``res_type``), and the newest lastUpdated among them: what ``$meta`` of a type or the system lists."""
        found: dict[str, list[tuple[Any, ...]]] = {}
        with self.reading() as connection:
            for name, table, columns in (
                ("tag", TOKEN, (TOKEN.c.system, TOKEN.c.code)),
                ("security", TOKEN, (TOKEN.c.system, TOKEN.c.code)),
                ("profile", URI, (URI.c.uri,)),
            ):
                conditions = [table.c.param == f"_{name}", table.c.seq_to.is_(None)]
                if res_type:
                    conditions.append(table.c.res_type == res_type)
                statement = select(*columns).where(*conditions).distinct().order_by(*columns)
                found[name] = [tuple(row) for row in connection.execute(statement)]
            newest = select(func.max(RESOURCE.c.last_updated)).where(RESOURCE.c.deleted.is_(False))
            if res_type:
                newest = newest.where(RESOURCE.c.res_type == res_type)
            return found, connection.execute(newest).scalar()

    def count_current(self, res_type: str, at_seq: int | None = None) -> tuple[int, int] | None:
        """The newest commit's seq and how many resources of ``res_type`` are current at it (the
        per-type count the write path keeps); None when ``at_seq`` is given and is not the newest."""
        with self.reading() as connection:
            seq, _, counts = current_counts(connection, [res_type])
        return (seq, counts[res_type]) if at_seq is None or at_seq == seq else None

    def last_seq(self) -> int:
        """The sequence number of the newest committed write."""
        with self.reading() as connection:
            seq: int = connection.execute(_SELECT_SEQ).scalar_one()
        return seq

    # erasure ------------------------------------------------------------------------------------
    def referrers(self, targets: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """The resources (type, id) any version of which, current or past, refers to one of ``targets``."""
        found: set[tuple[str, str]] = set()
        wanted = sorted(targets)
        with self.reading() as connection:
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                statement = (
                    select(RESOURCE.c.res_type, RESOURCE.c.res_id)
                    .join(REFERENCE, REFERENCE.c.res_pk == RESOURCE.c.pk)
                    .where(tuple_(REFERENCE.c.target_type, REFERENCE.c.target_id).in_(batch))
                    .distinct()
                )
                found.update((row.res_type, row.res_id) for row in connection.execute(statement))
        return found

    def erase(self, keys: Collection[tuple[str, str]]) -> Erased:
        """Remove the resources ``keys`` (type, id) for good: every version, every index row, the
        resource row. Not a FHIR delete (which keeps history): erasure leaves no version behind.

        It takes the commit clock's lock like a write and moves the clock on by one (a seq that no
        version carries), so that what is cached per seq (the catalogue's statistics) is rebuilt.
        On SQLite the deleted rows are overwritten (``secure_delete``) and the write-ahead log is
        checkpointed into the file, so that no page of the store's files keeps them.
        """
        wanted = sorted(keys)
        erased = Erased()
        sqlite = self.engines.dialect == "sqlite"
        with self.engines.writer.begin() as connection:
            if sqlite:  # overwrite what is deleted with zeros, rather than leave it in free pages
                connection.exec_driver_sql("PRAGMA secure_delete=ON")
            clock = connection.execute(
                select(CLOCK.c.seq, CLOCK.c.last_updated).where(CLOCK.c.id == 1).with_for_update()
            ).one()
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                pks = list(
                    connection.execute(
                        select(RESOURCE.c.pk).where(tuple_(RESOURCE.c.res_type, RESOURCE.c.res_id).in_(batch))
                    ).scalars()
                )
                if not pks:
                    continue
                current = connection.execute(
                    select(RESOURCE.c.res_type, func.count())
                    .where(RESOURCE.c.pk.in_(pks), RESOURCE.c.deleted.is_(False))
                    .group_by(RESOURCE.c.res_type)
                ).all()
                _count_changes(connection, {res_type: -n for res_type, n in current})
                for table in INDEX_TABLES.values():
                    erased.index_rows += connection.execute(delete(table).where(table.c.res_pk.in_(pks))).rowcount
                connection.execute(delete(STUDY_FACTS).where(STUDY_FACTS.c.res_pk.in_(pks)))
                erased.versions += connection.execute(delete(VERSION).where(VERSION.c.res_pk.in_(pks))).rowcount
                erased.resources += connection.execute(delete(RESOURCE).where(RESOURCE.c.pk.in_(pks))).rowcount
            now = max(time.time_ns() // 1000, clock.last_updated + 1)
            connection.execute(update(CLOCK).where(CLOCK.c.id == 1).values(seq=clock.seq + 1, last_updated=now))
            if sqlite:
                connection.exec_driver_sql("PRAGMA secure_delete=FAST")  # the pooled connection as it was
        if sqlite:
            forget_deleted_pages(self.engines)
        return erased
