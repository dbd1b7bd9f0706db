"""The audit trail's tables, on a metadata of their own: on SQLite they live in a file of their own
(``store.database.engines_beside``), so that recording a read never waits for a long write transaction;
``AuditLog`` creates them there (``store.database.ensure_tables``).

``audit_event`` holds the records; each record's ``hash`` chains it to the one before (``audit.chain``).
``audit_chain`` is the chain's head, one row: the last record chained and its hash. Every writer locks
it for the transaction that appends a batch, so the chain stays one line whatever the processes.

Only ``audit.log`` reads and writes them; ``audit.events`` turns their columns into search conditions.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

AUDIT_METADATA = MetaData()
AUDIT = Table(
    "audit_event",
    AUDIT_METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("recorded", BigInteger, nullable=False),  # microseconds since the epoch
    Column("client_id", String(128), nullable=True),
    Column("interaction", String(32), nullable=False),  # FHIR restful-interaction: read, search-type, create...
    Column("action", String(1), nullable=False),  # C R U D E
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=True),  # values of personal parameters as keyed hashes
    Column("entity", String(256), nullable=True),  # Type/id when the request names one resource
    Column("entity_type", String(64), nullable=True),
    Column("status", Integer, nullable=False),
    Column("detail", Text, nullable=True),  # why it failed
    Column("address", String(64), nullable=True),
    Column("hash", String(64), nullable=True),  # HMAC chaining it to the record before; none before the chain
    Index("ix_audit_recorded", "recorded"),
    Index("ix_audit_client", "client_id", "id"),
    Index("ix_audit_entity", "entity", "id"),
)
AUDIT_CHAIN = Table(
    "audit_chain",
    AUDIT_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: the head
    Column("start_id", BigInteger, nullable=False),  # records up to this id were written before the chain
    Column("last_id", BigInteger, nullable=False),  # the newest chained record (start_id: none yet)
    Column("last_hash", String(64), nullable=False),
    Column("key_id", String(16), nullable=False),  # which key the chain is keyed with (never the key)
)
