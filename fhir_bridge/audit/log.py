"""Writing and reading audit records (the ``audit_event`` table): group commit, the hash chain, purge."""

from __future__ import annotations

import asyncio
import logging
import operator
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Row, String, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from fhir_bridge.audit.chain import (
    HASHED_COLUMNS,
    PURGE_PATH,
    ChainKey,
    ChainKeyMismatch,
    Checkpoint,
    Head,
    Report,
    verify,
)
from fhir_bridge.audit.commit import GroupCommit, LoopCommit
from fhir_bridge.audit.tables import AUDIT, AUDIT_CHAIN
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.metrics import AUDIT_WRITE
from fhir_bridge.store.database import Engines, driver_connection, ensure_tables

log = logging.getLogger("fhir_bridge.audit")
AUDIT_TABLES = (AUDIT,)  # the trail's tables, for what moves a whole database (``store.copy``)

# Search parameters whose values can name a person directly: kept in the trail only as keyed hashes,
# so that "who searched for this identifier" can be answered without the trail holding the identifier.
PERSONAL_PARAMETERS = frozenset(
    {
        "identifier",
        "name",
        "family",
        "given",
        "phonetic",
        "birthdate",
        "telecom",
        "phone",
        "email",
        "address",
        "address-city",
        "address-postalcode",
        "address-state",
        "address-country",
        "_content",
        "_text",
    }
)


@dataclass(frozen=True)
class AuditEntry:
    """What one request did: the columns of ``audit_event`` without the id."""

    recorded: int  # microseconds since the epoch
    client_id: str | None
    interaction: str
    action: str
    method: str
    path: str
    query: str | None
    entity: str | None
    entity_type: str | None
    status: int
    detail: str | None
    address: str | None


DIMSE = "DIMSE"  # the ``method`` of records of DICOM network (DIMSE) associations; ``path`` names the service
DIMSE_CLIENT_PREFIX = "dicom-ae:"  # ``client_id`` of a DIMSE record: the calling AE title, so prefixed
# DIMSE records have no HTTP status; ``status`` holds the class of their outcome on the same scale, so that
# AuditEvent.outcome and the ``outcome`` search treat both alike.
DIMSE_OUTCOME_STATUS = {"success": 200, "refused": 403, "partial": 422, "failed": 503}
MLLP = "MLLP"  # the ``method`` of records of HL7 v2 messages received over MLLP; ``path`` names the message type
MLLP_CLIENT_PREFIX = "hl7-facility:"  # ``client_id`` of an MLLP record: the sending facility (MSH-4), so prefixed
# The acknowledgment code of an MLLP record on the same scale as the HTTP statuses: AA accepted, AE the
# message's content is in error, AR rejected (sender or message type not accepted; 503: the store is down).
MLLP_ACK_STATUS = {"AA": 200, "AE": 422, "AR": 403}


def dimse_entry(
    service: str,
    called_ae: str,
    calling_ae: str,
    address: str | None,
    outcome: str,
    detail: str,
) -> AuditEntry:
    """The record of one DICOM association (C-STORE, C-ECHO) or of one refused association request.

    ``outcome``: success, refused (association rejected), partial (some instances failed), failed.
    """
    storing = service == "C-STORE"
    return AuditEntry(
        recorded=now_us(),
        client_id=(DIMSE_CLIENT_PREFIX + calling_ae)[:128],
        interaction="create" if storing else "operation",
        action="C" if storing else "E",
        method=DIMSE,
        path=f"dicom:{called_ae}/{service}",
        query=None,
        entity=None,
        entity_type="ImagingStudy" if storing else None,
        status=DIMSE_OUTCOME_STATUS[outcome],
        detail=detail[:1000],
        address=address,
    )


def mllp_entry(
    message_type: str, facility: str, address: str | None, status: int, detail: str, entity: str | None = None
) -> AuditEntry:
    """The record of one HL7 v2 message received over MLLP (or of a refused connection: ``message_type`` CONNECT).

    ``status`` is the ACK's class (``MLLP_ACK_STATUS``, or 503 when the store could not take the message);
    ``entity`` the Provenance of what the message stored, if anything.
    """
    received = message_type != "CONNECT"
    return AuditEntry(
        recorded=now_us(),
        client_id=(MLLP_CLIENT_PREFIX + facility)[:128] if facility else None,
        interaction="create" if received else "operation",
        action="C" if received else "E",
        method=MLLP,
        path=f"hl7v2:{message_type}",
        query=None,
        entity=entity,
        entity_type="Provenance" if entity else None,
        status=status,
        detail=detail[:1000],
        address=address,
    )


def now_us() -> int:
    return int(time.time() * 1_000_000)


def is_personal(name: str) -> bool:
    """Whether a search parameter's value can name a person: any part of its name is personal.

    Chains (``subject:Patient.identifier``), reverse chains (``_has:Observation:patient:identifier``)
    and modifiers (``patient:identifier``, ``identifier:of-type``) all reach a personal parameter,
    whichever part of the name holds it; the other parts (types, modifiers) are never personal names.
    """
    return any(part in PERSONAL_PARAMETERS for part in re.split(r"[.:]", name))


def redact_query(parameters: Sequence[tuple[str, str]], keyed_hash: Callable[[str], str] | None) -> str | None:
    """The query string for the trail, with values of personal parameters replaced by keyed hashes."""
    if not parameters:
        return None
    kept = []
    for name, value in parameters:
        if value and is_personal(name):
            value = f"hmac:{keyed_hash(value)[:32]}" if keyed_hash else "redacted"
        kept.append((name, value))
    return urlencode(kept)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def redact_detail(detail: str | None, keyed_hash: Callable[[str], str] | None) -> str | None:
    """A refusal's reason for the trail, with every quoted value (where messages quote what the client
    sent: search values, references, ids) replaced by its keyed hash, as personal query values are."""
    if not detail:
        return None

    def hashed(match: re.Match[str]) -> str:
        value = match.group(0)[1:-1]
        return f"'hmac:{keyed_hash(value)[:16]}'" if keyed_hash else "'redacted'"

    return _QUOTED.sub(hashed, detail)[:1000]


CLI = "CLI"  # the ``method`` of records of administrative commands; ``path`` names the command
CLI_CLIENT_PREFIX = "cli:"  # ``client_id`` of a CLI record: the operating-system user who ran it
CLI_OUTCOME_STATUS = {"success": 200, "refused": 400, "not-found": 404, "partial": 422, "failed": 500}
_INTERACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "operation"}


def admin_entry(command: str, action: str, operator: str, outcome: str, detail: str) -> AuditEntry:
    """The record of an administrative command (``clients add``, ``dicom ingest``...) run by ``operator``.

    ``action``: C R U D E, as AuditEvent.action; ``outcome``: a key of ``CLI_OUTCOME_STATUS``.
    ``detail`` says what it did, without patient data (counts, client ids, key ids; no paths).
    """
    return AuditEntry(
        recorded=now_us(),
        client_id=(CLI_CLIENT_PREFIX + operator)[:128],
        interaction=_INTERACTIONS[action],
        action=action,
        method=CLI,
        path=command,
        query=None,
        entity=None,
        entity_type=None,
        status=CLI_OUTCOME_STATUS[outcome],
        detail=detail[:1000],
        address=None,
    )


CHAIN_HEAD_ID = 1
_ENTRY_FIELDS = tuple(field.name for field in fields(AuditEntry))
_entry_values = operator.attrgetter(*_ENTRY_FIELDS)
# The entry's text values that need checking before they are stored, by position: (position, width or 0).
_TEXTS = tuple(
    (position, column.type.length or 0)
    for position, column in enumerate(AUDIT.c[name] for name in _ENTRY_FIELDS)
    if isinstance(column.type, String)
)


def _storable(entry: AuditEntry) -> list[Any]:
    """An entry's values (``_ENTRY_FIELDS`` order) as every database holds them: text without NUL
    (PostgreSQL text cannot hold it) and cut to its column's width (PostgreSQL refuses longer text;
    SQLite would keep it)."""
    values = list(_entry_values(entry))
    for position, width in _TEXTS:
        value = values[position]
        if value is not None and ("\x00" in value or (width and len(value) > width)):
            value = value.replace("\x00", "\\0")
            values[position] = value[:width] if width else value
    return values


_COLUMNS = tuple(column.name for column in AUDIT.columns)  # a row's values, in this order (the table's)
assert ("id", *_ENTRY_FIELDS, "hash") == _COLUMNS and _COLUMNS[:-1] == HASHED_COLUMNS
# PostgreSQL: a batch's rows as one array per column, inserted only if the head moves from where this
# process left it (one fixed statement, prepared once, whatever the batch's size).
_ARRAY_TYPES = {c.name: "bigint" if c.name in ("id", "recorded") else "integer" if c.name == "status" else "text"
                for c in AUDIT.columns}  # fmt: skip
_APPEND_IF_HEAD = text(
    "WITH moved AS (UPDATE audit_chain SET last_id = :last_id, last_hash = :last_hash "
    f"WHERE id = {CHAIN_HEAD_ID} AND last_id = :expected AND key_id = :key_id RETURNING id) "
    f"INSERT INTO audit_event ({', '.join(_ARRAY_TYPES)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{n} AS {t}[])' for n, t in _ARRAY_TYPES.items())}) "
    "WHERE EXISTS (SELECT 1 FROM moved) RETURNING id"
)
_MOVE_HEAD = text(
    "UPDATE audit_chain SET last_id = :last_id, last_hash = :last_hash "
    f"WHERE id = {CHAIN_HEAD_ID} AND last_id = :expected AND key_id = :key_id"
)
_MOVE_HEAD_SQLITE = str(_MOVE_HEAD)  # the same text, run on the sqlite3 driver (named parameters alike)
_HEAD_SQLITE = f"SELECT start_id, last_id, last_hash, key_id FROM audit_chain WHERE id = {CHAIN_HEAD_ID}"
_INSERT_SQLITE = f"INSERT INTO audit_event ({', '.join(_ARRAY_TYPES)}) VALUES ({', '.join('?' * len(_ARRAY_TYPES))})"
VERIFY_PAGE = 2000  # records read per query while verifying


def _sqlite_transaction(
    driver: sqlite3.Connection,
    guard: str,
    guard_parameters: dict[str, Any],
    insert_rows: str,
    rows: list[tuple[Any, ...]],
) -> bool:
    """``guard`` (an UPDATE), and if it changed one row ``insert_rows``, in one write transaction on
    the sqlite3 driver itself (a pool's connection, autocommit off: it issues BEGIN/COMMIT)."""
    cursor = driver.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        if cursor.execute(guard, guard_parameters).rowcount != 1:
            cursor.execute("ROLLBACK")
            return False
        cursor.executemany(insert_rows, rows)
        cursor.execute("COMMIT")
    except BaseException:
        if driver.in_transaction:
            cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()
    return True


# SQLite, commits on the event loop: they never wait for the lock (another process holding it, the
# batch goes to the writer thread, which waits) and never copy the WAL into the database (an fsync):
# a thread checkpoints after this many of them. RESTART, not PASSIVE: under steady commits a passive
# checkpoint never catches up with the last frame, and the WAL is only rewound after one that does;
# while RESTART holds writers back, the loop's batches go to the writer thread.
CHECKPOINT_EVERY = 200


class _LoopConnection:
    """The connection that commits on the event loop (``AuditLog._append_now``), and its checkpoints."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self.lock = threading.Lock()  # one loop commits at a time (each test client runs a loop of its own)
        self._raw: Any = None
        self._commits = 0
        self._checkpointing = threading.Lock()

    def driver(self) -> sqlite3.Connection:
        if self._raw is None:
            raw = self.engines.writer.raw_connection()  # set up as every connection (WAL, synchronous)
            raw.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
            raw.driver_connection.execute("PRAGMA wal_autocheckpoint=0")  # type: ignore[union-attr]
            self._raw = raw
        return self._raw.driver_connection

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and self._checkpointing.acquire(blocking=False):
            self._commits = 0
            threading.Thread(target=self._checkpoint, name="audit-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            raw = self.engines.writer.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(RESTART)")  # type: ignore[union-attr]
            finally:
                raw.close()
        except Exception as error:  # the next one copies what this one could not
            log.warning("checkpointing the audit trail's WAL failed: %s", type(error).__name__)
        finally:
            self._checkpointing.release()

    def close(self) -> None:
        with self.lock:
            if self._raw is not None:
                self._raw.invalidate()  # closed, not pooled: its PRAGMAs are this use's only
                self._raw = None


class AuditLog:
    """Appends audit records, chained and grouped into shared transactions, and reads them back.

    ``record``/``record_async`` return once the records are committed: a request is answered only
    after its record is durable. One writer thread per AuditLog (per process) writes the batches;
    several processes on one database stay on one chain by locking its head row per batch.
    """

    def __init__(self, engines: Engines, key: ChainKey | None = None) -> None:
        """A trail on ``engines`` (``store.database.engines_beside`` the store's), its tables created if new."""
        ensure_tables(engines, [AUDIT, AUDIT_CHAIN])
        self.engines = engines
        self.key = key or ChainKey.unkeyed()
        self._insert = insert(AUDIT)
        self._start_chain()
        self._head: Head | None = None  # PostgreSQL: the head after this process's last batch
        self._writer: GroupCommit[AuditEntry] = GroupCommit(self._append, name="audit-writer")
        # PostgreSQL: the batch's statement as the driver takes it (compiled once)
        self._append_if_head_sql = str(_APPEND_IF_HEAD.compile(dialect=engines.writer.dialect))
        self._loop: _LoopConnection | None = None  # SQLite: commits on the event loop (``audit.commit``)
        self._on_loop: LoopCommit[AuditEntry] | None = None
        if engines.dialect == "sqlite":
            self._loop = _LoopConnection(engines)
            self._on_loop = LoopCommit(self._append_now, self._writer)

    # writing -----------------------------------------------------------------------------------------
    def submit(self, entries: Sequence[AuditEntry], *, announced: bool = False) -> Future[None]:
        """Queue records that belong together (a Bundle and its entries: one transaction); the future
        is done once they are committed, or holds why they could not be. ``announced``: by a request
        that called ``expect`` when it started."""
        return self._writer.submit(entries, announced=announced)

    def expect(self) -> None:
        """A request that will write its record has started: the writer may wait for it to batch it
        with others (``audit.commit``); it must then ``record_async(..., announced=True)`` or ``withdraw``."""
        self._writer.expect()

    def withdraw(self) -> None:
        self._writer.withdraw()

    @property
    def announced(self) -> int:
        """Requests that announced a record (``expect``) and have neither written nor withdrawn it."""
        return self._writer.expected

    def record(self, entry: AuditEntry) -> None:
        """Write one record (from a worker thread); raises if it could not be written."""
        self.submit([entry]).result()

    async def record_async(self, entries: Sequence[AuditEntry], *, announced: bool = False) -> None:
        """Write records from the event loop: waits for the commit without holding a worker thread
        (on SQLite the loop commits them itself)."""
        if self._on_loop is not None:
            await self._on_loop.submit(entries, announced=announced)
        else:
            await asyncio.wrap_future(self.submit(entries, announced=announced))

    def close(self) -> None:
        """Write what is queued and stop the writer thread (later records are written by their caller)."""
        if self._on_loop is not None and self._loop is not None:
            self._on_loop.close()
            self._loop.close()
        self._writer.close()

    def _start_chain(self) -> None:
        """The chain's head, made once: records already in the trail stay before it, unchained.

        A trail chained under another key is refused here, at start-up (ConfigurationError): a
        worker with another key would fork the chain, and every one of its requests would fail.
        """
        with self.engines.reader.connect() as connection:
            key_id = connection.execute(select(AUDIT_CHAIN.c.key_id)).scalar()
        if key_id is None:
            self._make_head()
        elif key_id != self.key.id:
            raise ConfigurationError(
                f"the audit trail is chained under key id {key_id}, this configuration's key is {self.key.id}: "
                "every worker (and `audit verify`) needs the same site secret, or FHIR_BRIDGE_AUDIT_KEY_FILE"
            )

    def _make_head(self) -> None:
        with self.engines.writer.begin() as connection:
            if connection.execute(select(AUDIT_CHAIN.c.id)).first() is not None:
                return
            start = connection.execute(select(func.coalesce(func.max(AUDIT.c.id), 0))).scalar_one()
            head = {"start_id": start, "last_id": start, "last_hash": self.key.genesis(start), "key_id": self.key.id}
            try:
                with connection.begin_nested():  # another worker starting at once made it first: theirs stands
                    connection.execute(insert(AUDIT_CHAIN).values(id=CHAIN_HEAD_ID, **head))
            except IntegrityError:
                pass

    def _locked_head(self, connection: Connection) -> Head:
        """The chain's head, locked until the transaction ends (PostgreSQL; SQLite's writer holds the file)."""
        row = connection.execute(select(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == CHAIN_HEAD_ID).with_for_update()).one()
        head = Head(row.start_id, row.last_id, row.last_hash, row.key_id)
        if head.key_id != self.key.id:
            raise ChainKeyMismatch(
                f"the audit chain is keyed with key id {head.key_id}, this process's key is {self.key.id}: "
                "every worker must use the same site secret (or audit key file)"
            )
        return head

    def _append(self, entries: Sequence[AuditEntry]) -> None:
        """One batch, one transaction. When this process wrote the last batch it knows the head: the
        rows go in with the head moved from there, if it is still there (another worker's batch in
        between: the head is locked and read, and it is done again). Every statement saved is a
        shorter hold of the chain for all workers (on PostgreSQL the batch is one statement)."""
        known = self._head
        try:
            with AUDIT_WRITE.time():
                if known is not None and self._append_if_head(known, entries):
                    return
                with self.engines.writer.begin() as connection:
                    self._append_in(connection, self._locked_head(connection), entries)
        except BaseException:
            self._head = None  # the head is unknown until read again
            raise

    def _append_now(self, entries: Sequence[AuditEntry]) -> bool:
        """SQLite, on the event loop: the batch committed here and now if that needs no wait (no other
        process holds the write lock, the head is still where this process saw it); else False, and
        nothing is written (the writer thread then writes it)."""
        loop = self._loop
        if loop is None or not loop.lock.acquire(blocking=False):
            return False
        try:
            started = time.perf_counter()
            driver = loop.driver()
            known = self._head or Head(*driver.execute(_HEAD_SQLITE).fetchone())  # checked by the guard
            rows, moved = self._chained_rows(known, entries)
            guard = {"last_id": moved.last_id, "last_hash": moved.last_hash, "expected": known.last_id}
            guard["key_id"] = self.key.id
            if not _sqlite_transaction(driver, _MOVE_HEAD_SQLITE, guard, _INSERT_SQLITE, rows):
                return False
            AUDIT_WRITE.observe(time.perf_counter() - started)
            self._head = moved
            loop.committed()
            return True
        finally:
            loop.lock.release()

    def _chained_rows(self, head: Head, entries: Sequence[AuditEntry]) -> tuple[list[tuple[Any, ...]], Head]:
        """The rows of ``entries`` after ``head`` (values in ``_COLUMNS`` order), and the head after them."""
        last_id, last_hash = head.last_id, head.last_hash
        rows = []
        link = self.key.link_values
        for entry in entries:
            last_id += 1
            values = [last_id, *_storable(entry)]  # HASHED_COLUMNS
            last_hash = link(last_hash, values)
            rows.append((*values, last_hash))
        return rows, Head(head.start_id, last_id, last_hash, head.key_id)

    def _append_in(self, connection: Connection, head: Head, entries: Sequence[AuditEntry]) -> None:
        """Insert ``entries`` after ``head`` (locked by the caller) and move the head past them."""
        rows, moved = self._chained_rows(head, entries)
        connection.execute(self._insert, [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        connection.execute(
            update(AUDIT_CHAIN)
            .where(AUDIT_CHAIN.c.id == CHAIN_HEAD_ID)
            .values(last_id=moved.last_id, last_hash=moved.last_hash)
        )
        self._head = moved

    def _append_if_head(self, known: Head, entries: Sequence[AuditEntry]) -> bool:
        """Insert the rows and move the head, if the head is still ``known`` (False: nothing written).

        PostgreSQL: one statement (the rows as one array per column). SQLite: moving the head first
        tells whether it was still there; run on the sqlite3 driver itself, as SQLAlchemy's work
        per statement was most of the CPU a request's record cost."""
        rows, moved = self._chained_rows(known, entries)
        expected = {"last_id": moved.last_id, "last_hash": moved.last_hash, "expected": known.last_id}
        expected["key_id"] = self.key.id
        if self.engines.dialect == "postgresql":  # one statement, atomic alone: no BEGIN/COMMIT round trips
            arrays = dict(zip(_COLUMNS, ([*column] for column in zip(*rows, strict=True)), strict=True))
            with driver_connection(self.engines.writer) as driver, driver.cursor() as cursor:
                cursor.execute(self._append_if_head_sql, {**arrays, **expected})
                if len(cursor.fetchall()) != len(rows):
                    return False
        else:
            raw = self.engines.writer.raw_connection()
            try:
                driver = raw.driver_connection
                if not _sqlite_transaction(driver, _MOVE_HEAD_SQLITE, expected, _INSERT_SQLITE, rows):  # type: ignore[arg-type]
                    return False
            finally:
                raw.close()
        self._head = moved
        return True

    # reading -----------------------------------------------------------------------------------------
    def read(self, record_id: int) -> Row | None:
        with self.engines.reader.connect() as connection:
            return connection.execute(select(AUDIT).where(AUDIT.c.id == record_id)).first()

    def search(self, conditions: list, *, after: int | None, count: int, newest_first: bool = False) -> list[Row]:
        """Records matching every condition, in id order (oldest first), after the given id.

        ``newest_first``: the latest records, newest first, before the given id (a screen of recent activity).
        """
        statement = select(AUDIT).where(*conditions)
        if after is not None:
            statement = statement.where(AUDIT.c.id < after if newest_first else AUDIT.c.id > after)
        order = AUDIT.c.id.desc() if newest_first else AUDIT.c.id
        with self.engines.reader.connect() as connection:
            return list(connection.execute(statement.order_by(order).limit(count)).all())

    # integrity and retention -------------------------------------------------------------------------
    def verify(self, expect: tuple[int, str] | None = None) -> Report:
        """Check the whole chain in one consistent snapshot (see ``audit.chain.verify``)."""
        with self._snapshot() as connection:
            head_row = connection.execute(select(AUDIT_CHAIN).where(AUDIT_CHAIN.c.id == CHAIN_HEAD_ID)).first()
            head = Head(head_row.start_id, head_row.last_id, head_row.last_hash, head_row.key_id) if head_row else None
            return verify(self.key, head, self._walk(connection), self._checkpoint(connection), expect)

    def _snapshot(self) -> Any:
        connection = self.engines.reader.connect()
        if self.engines.dialect == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        connection.begin()  # one read transaction: the head and every page seen at one moment
        return connection

    @staticmethod
    def _walk(connection: Connection) -> Iterator[dict[str, Any]]:
        after = -1
        while True:
            page = connection.execute(
                select(AUDIT).where(AUDIT.c.id > after).order_by(AUDIT.c.id).limit(VERIFY_PAGE)
            ).all()
            for row in page:
                yield dict(row._mapping)
            if len(page) < VERIFY_PAGE:
                return
            after = page[-1].id

    @staticmethod
    def _checkpoint(connection: Connection) -> Checkpoint | None:
        """The latest purge's checkpoint (trusted only once the walk has verified its record)."""
        rows = connection.execute(
            select(AUDIT.c.query).where(AUDIT.c.path == PURGE_PATH, AUDIT.c.method == CLI).order_by(AUDIT.c.id.desc())
        ).scalars()
        return next((checkpoint for query in rows if (checkpoint := Checkpoint.of(query))), None)

    def purge(self, before_us: int, operator: str) -> int:
        """Delete the records older than ``before_us`` (µs since the epoch) and append the purge's record,
        a checkpoint the chain verifies from, in one transaction. Returns how many were deleted.

        The oldest records go, up to the first record newer than ``before_us``: the chain is cut once,
        at its start. The purge's record is written whatever was deleted (it is an administrative action).
        """
        with self.engines.writer.begin() as connection:
            head = self._locked_head(connection)
            newer = connection.execute(select(func.min(AUDIT.c.id)).where(AUDIT.c.recorded >= before_us)).scalar()
            through = (newer - 1) if newer is not None else head.last_id
            deleted = 0
            checkpoint = None
            if through > 0:
                chain_hash = (
                    connection.execute(select(AUDIT.c.hash).where(AUDIT.c.id == through)).scalar()
                    if through > head.start_id
                    else self.key.genesis(head.start_id)  # only unchained records go: the chain starts as before
                )
                deleted = connection.execute(delete(AUDIT).where(AUDIT.c.id <= through)).rowcount
                if deleted and chain_hash:
                    checkpoint = Checkpoint(through, chain_hash)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before_us / 1_000_000))
            entry = admin_entry(PURGE_PATH, "D", operator, "success", f"deleted {deleted} records older than {when}")
            if checkpoint is not None:
                entry = AuditEntry(**{**asdict(entry), "entity_type": "AuditEvent", "query": checkpoint.query()})
            self._append_in(connection, head, [entry])
        return deleted
