"""Engines for SQLite (embedded default) and PostgreSQL (scale-out), and schema set-up on start.

Dialect differences live here and nowhere else:
- SQLite runs in WAL mode; a write transaction starts with ``BEGIN IMMEDIATE`` so that writers
  queue for the database lock instead of failing half-way with "database is locked".
- PostgreSQL orders writers on the commit clock's row lock (``SELECT ... FOR UPDATE``), and
  schema creation takes an advisory lock so that many workers can start at once.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.schema import sort_tables

from fhir_bridge.store.tables import INFO, SQLModel

_log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_S = 60
# Connections kept open per SQLite engine: as many as the threads that run requests at once (anyio's
# default limiter, 40). With fewer, each request beyond the pool opened an overflow connection (its
# PRAGMAs included) and closed it again: hundreds of reconnects a second at 16 clients.
SQLITE_POOL_SIZE = 40
_MIGRATION_LOCK_KEY = 7_301_001  # advisory lock id for schema set-up on PostgreSQL


@dataclass(frozen=True)
class Engines:
    """``reader`` for reads; ``writer`` for write transactions (the same engine on PostgreSQL)."""

    reader: Engine
    writer: Engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # zero what an update or delete frees inside a page, where that costs no extra write: an
        # erased patient's data must not linger in the file as free space (erasure uses ON)
        cursor.execute("PRAGMA secure_delete=FAST")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql(begin)

    return engine


def create_engines(database_url: str) -> Engines:
    url = make_url(database_url)
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"{url.get_backend_name()} is not supported: SQLite or PostgreSQL")
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("in-memory SQLite is not supported (every connection would see its own): name a file")
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return Engines(
            reader=_sqlite_engine(database_url, "BEGIN"), writer=_sqlite_engine(database_url, "BEGIN IMMEDIATE")
        )
    # 16 kept open: 16 clients at once do not open and close overflow connections (a PostgreSQL
    # connection costs milliseconds to open); 22 at most per process, so 4 workers stay under
    # PostgreSQL's default max_connections (100)
    engine = create_engine(database_url, pool_size=16, max_overflow=6, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _plan_with_values(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # psycopg prepares a statement it has run 5 times on a connection, and PostgreSQL then plans
        # it once for any values (a generic plan) when that plan's estimated cost is no higher. A
        # search's plan depends on its values: the generic plan of the month search
        # (``modality=CT&started=ge..&started=lt..``) drives by the modality's rows, one date probe
        # each (13 ms and 25,000 buffers at scale 0.05, linear), where the values give the month's
        # index range and a page (2 ms). So every statement is planned with its values (a prepared
        # one is still parsed once); a read by id pays its planning, tens of microseconds.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.commit()

    return Engines(reader=engine, writer=engine)


@contextmanager
def driver_connection(engine: Engine) -> Iterator[Any]:
    """A pool connection's driver connection, for one statement that is atomic alone.

    On PostgreSQL it runs in autocommit: psycopg would send a BEGIN before the statement and the
    pool a ROLLBACK or COMMIT after it, two round trips of three. The connection leaves autocommit
    before it goes back to the pool, or is not pooled (a pooled connection in autocommit would run
    every later transaction statement by statement). SQLite's connections are in autocommit already
    (``isolation_level`` None: BEGIN is issued explicitly), and their statements alone run on a spare
    connection kept out of the pool (``SQLITE_SPARES``).
    """
    if engine.dialect.name == "sqlite":
        spares = _spares.get(engine)
        if spares is None:
            spares = _spares_of(engine)
        try:
            spare = spares.pop()
        except IndexError:
            spare = engine.raw_connection()  # set up as every pool connection (PRAGMAs)
        try:
            yield spare.driver_connection
        except BaseException:
            spare.close()  # back to the pool, which resets it (a failed statement may have left a transaction)
            raise
        if len(spares) < SQLITE_SPARES and not spare.driver_connection.in_transaction:
            spares.append(spare)
        else:
            spare.close()
        return
    raw = engine.raw_connection()  # the pool's connection: set up (PRAGMAs), pinged, reset on return
    alone = engine.dialect.name == "postgresql"
    try:
        if alone:
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        yield raw.driver_connection
    finally:
        if alone:
            try:
                raw.driver_connection.autocommit = False  # type: ignore[union-attr]
            except Exception:
                raw.invalidate()
        raw.close()


# SQLite: driver connections kept out of the pool for single statements, per engine. A pool checkout
# and check-in (its events, the reset on return) cost 7.7 us, more than a read by id's statement (6 us);
# a spare is taken and put back with a list's pop and append. As many as run such statements at once
# (the event loop's reads, a few threads'), up to ``SQLITE_SPARES``; closed when the engine is disposed.
SQLITE_SPARES = 8
_spares: weakref.WeakKeyDictionary[Engine, list[Any]] = weakref.WeakKeyDictionary()


def _spares_of(engine: Engine) -> list[Any]:
    spares = _spares.setdefault(engine, [])
    if not event.contains(engine, "engine_disposed", _close_spares):
        event.listen(engine, "engine_disposed", _close_spares)
    return spares


def _close_spares(engine: Engine) -> None:
    for raw in _spares.pop(engine, []):
        raw.invalidate()  # closed, not returned: the pool is being disposed


def lock_schema_setup(connection: Connection) -> None:
    """Serialise schema set-up of workers starting together, per schema: stores in other schemas
    of the same database (several sites, or test runs) do not wait for each other."""
    connection.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"), {"key": _MIGRATION_LOCK_KEY}
    )


def engines_beside(database_url: str, engines: Engines, name: str) -> Engines:
    """Where a package keeps tables apart from the store's (the audit trail): ``<store>.<name>.db``
    beside a SQLite store (SQLite has one writer per file: a read's audit record must not queue
    behind a long ingest), the store's own database on PostgreSQL (``engines`` returned as given)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return engines
    path = Path(url.database or "").expanduser()
    beside = url.set(database=str(path.with_name(f"{path.stem}.{name}{path.suffix or '.db'}")))
    text_url = beside.render_as_string(hide_password=False)
    return Engines(reader=_sqlite_engine(text_url, "BEGIN"), writer=_sqlite_engine(text_url, "BEGIN IMMEDIATE"))


def ensure_tables(engines: Engines, tables: Sequence[Table]) -> None:
    """Make sure a package's ``tables``, their indexes and their (nullable) columns exist in ``engines``' database.

    Owners call it when their service is built: their tables then exist even in a database prepared
    by a process that never imported them (``migration.prepare_schema`` creates the schema its revisions describe),
    and in a database of their own (``engines_beside``). One read when all is there; otherwise the
    schema lock and an idempotent create, safe when several workers start together.
    """
    with engines.reader.connect() as connection:
        if not _lacks(connection, tables):
            return
    with engines.writer.begin() as connection:
        if engines.dialect == "postgresql":
            lock_schema_setup(connection)
        _create(connection, tables, add_columns=True)


def _lacks(connection: Connection, tables: Sequence[Table]) -> bool:
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    for table in tables:
        if table.name not in existing:
            return True
        columns = {column["name"] for column in inspector.get_columns(table.name)}
        if any(column.name not in columns for column in table.columns):
            return True
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        if any(index.name not in indexes for index in table.indexes):
            return True
    return False


def _create(connection: Connection, tables: Sequence[Table], *, add_columns: bool = False) -> None:
    for table in sort_tables(tables):  # referenced tables first
        table.create(connection, checkfirst=True)
        if add_columns:
            _add_columns(connection, table)
        for index in table.indexes:  # indexes added by an upgrade, on existing tables
            index.create(connection, checkfirst=True)


def _add_columns(connection: Connection, table: Table) -> None:
    """Columns added to an existing table by an upgrade: nullable ones only, which old rows leave empty."""
    present = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for column in table.columns:
        if column.name in present:
            continue
        if not column.nullable:
            raise RuntimeError(f"cannot add the required column {table.name}.{column.name} to existing rows")
        kind = column.type.compile(dialect=connection.dialect)
        connection.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')


STATISTICS_FROM = 1024  # writes before the first refresh of planner statistics


def statistics_due(before: int, after: int) -> bool:
    """True when the store has doubled in writes since the last refresh (1,024, 2,048, 4,096, ...).

    Without statistics the planners of both databases guess badly on the index tables (a
    selective search can then scan a whole type); refreshing at each doubling keeps the cost
    logarithmic in the number of writes. PostgreSQL's autovacuum does this too where enabled.
    """
    return after >= STATISTICS_FROM and before.bit_length() != after.bit_length()


def refresh_statistics(engines: Engines) -> None:
    if engines.dialect == "sqlite":
        with engines.writer.connect() as connection:
            connection.exec_driver_sql("PRAGMA analysis_limit=2000")  # sample, don't read whole indexes
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    else:
        with engines.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # the store's own tables only: a bare ANALYZE walks every schema of the database
            for table in SQLModel.metadata.sorted_tables:
                connection.exec_driver_sql(f'ANALYZE "{table.name}"')


def forget_deleted_pages(engines: Engines) -> None:
    """SQLite: rewrite the file without its free space (``VACUUM``: old images of rows left by earlier
    updates), copy the write-ahead log into it and empty the log, so that deleted rows are gone from
    both files (as far as readers allow)."""
    raw = engines.writer.raw_connection()  # outside a transaction: neither can run inside one
    try:
        # free space of earlier updates (old row images) is rewritten away; the writers wait meanwhile
        raw.driver_connection.execute("PRAGMA secure_delete=ON")  # type: ignore[union-attr]
        raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
        raw.driver_connection.execute("PRAGMA secure_delete=FAST")  # type: ignore[union-attr]
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    except sqlite3.OperationalError as error:  # busy beyond the timeout: the rows are gone, their bytes not yet
        _log.warning(
            "the store's file could not be vacuumed after an erasure (%s): run `sqlite3 FILE VACUUM` when idle", error
        )
    finally:
        raw.close()


def ensure_info(engines: Engines, key: str, make: Callable[[], str]) -> str:
    """The store fact ``key``, made by ``make`` and saved the first time (once, whatever the workers)."""
    with engines.reader.connect() as connection:  # the common case: there, read without taking a lock
        found = connection.execute(select(INFO.c.value).where(INFO.c.key == key)).scalar_one_or_none()
    if found is not None:
        return found
    with engines.writer.begin() as connection:
        if engines.dialect == "postgresql":
            lock_schema_setup(connection)
        found = connection.execute(select(INFO.c.value).where(INFO.c.key == key)).scalar_one_or_none()
        if found is None:
            found = make()
            connection.execute(insert(INFO).values(key=key, value=found))
    return found


def find_info(engines: Engines, key: str) -> str | None:
    """The store fact ``key``, or None when there is none."""
    with engines.reader.connect() as connection:
        return connection.execute(select(INFO.c.value).where(INFO.c.key == key)).scalar_one_or_none()


def discard_info(engines: Engines, key: str) -> None:
    """Remove the store fact ``key`` (a secret moved out of the database)."""
    with engines.writer.begin() as connection:
        connection.execute(delete(INFO).where(INFO.c.key == key))


def file_beside(database_url: str, suffix: str) -> Path | None:
    """``<store>.<suffix>`` beside a SQLite store's file; None for other databases (and in-memory SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).expanduser()
    return path.with_name(f"{path.stem}.{suffix}")


def read_info(engines: Engines, key: str) -> str:
    with engines.reader.connect() as connection:
        return connection.execute(select(INFO.c.value).where(INFO.c.key == key)).scalar_one()


def unreachable_database(database_url: str, error: BaseException) -> str:
    """What an operator should read when the database cannot be opened (missing, unreachable, refused):
    the database named without its password, the reason in the driver's own words, and the fix."""
    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    if isinstance(error, OSError) and error.strerror:
        reason = f"{error.strerror}: {error.filename}"
    if url.get_backend_name() == "sqlite":
        return f"cannot open the SQLite database {url.database} (database_url {shown}): {reason}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    missing = f'database "{url.database}" does not exist'
    if missing in reason:
        user = f" -U {url.username}" if url.username else ""
        return (
            f"the PostgreSQL {missing} on {where} (database_url {shown})\n"
            f"create it with `createdb -h {url.host or 'localhost'} -p {url.port or 5432}{user} {url.database}`"
        )
    symptoms = ("Connection refused", "failed to resolve host", "timeout expired", "No route to host")
    for symptom in symptoms:
        if symptom.lower() in reason.lower():
            return (
                f"cannot reach PostgreSQL at {where} (database_url {shown}): {symptom.lower()}\n"
                "is the server running there, and are the host and port right?"
            )
    return f"cannot connect to PostgreSQL at {where} (database_url {shown}): {reason}"


def pool_status(engines: Engines) -> dict[tuple[str, str], int]:
    """Connections of each engine's pool: ``checked_out``, ``idle`` and ``overflow`` (those the pool reports)."""
    found: dict[tuple[str, str], int] = {}
    named = {"database": engines.writer} if engines.reader is engines.writer else vars(engines)
    for name, engine in named.items():
        pool = engine.pool
        for state, method in (("checked_out", "checkedout"), ("idle", "checkedin"), ("overflow", "overflow")):
            if callable(getattr(pool, method, None)):
                found[(name, state)] = int(getattr(pool, method)())
    return found
