"""The audit trail's table, on a metadata of its own: on SQLite it lives in a file of its own
(``store.database.engines_beside``), so that recording a read never waits for a long write transaction;
``AuditLog`` creates it there (``store.database.ensure_tables``).

Only ``audit.log`` reads and writes it; ``audit.events`` turns its columns into search conditions.
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
    Index("ix_audit_recorded", "recorded"),
    Index("ix_audit_client", "client_id", "id"),
    Index("ix_audit_entity", "entity", "id"),
)
