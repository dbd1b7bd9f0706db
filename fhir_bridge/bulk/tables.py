"""The tables of Bulk Data $export, declared through the store's schema API (``store.schema.table``).

Jobs and their NDJSON output live in the database, so that a job survives a restart and any API
worker on the same database answers its status and serves its files. Only ``bulk.jobs`` reads and
writes them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint

from fhir_bridge.store.schema import table

_ROW_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid, numbered by the database

# One $export job: its request, the commit it is pinned to, its state and its worker's lease.
BULK_JOB = table(
    "bulk_job",
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),  # the kick-off URL
    Column("parameters", Text, nullable=False),  # JSON: the parsed export request
    Column("at_seq", BigInteger, nullable=False),
    Column("transaction_time", BigInteger, nullable=False),  # microseconds
    Column("created", BigInteger, nullable=False),
    Column("finished", BigInteger, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", BigInteger, nullable=True),
    Column("cursor", Text, nullable=True),  # JSON: where to resume
    Column("exported", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_bulk_job_status", "status", "lease_expires"),
)

# One NDJSON file of a job (``output``, ``deleted`` or ``error``), of one resource type.
BULK_FILE = table(
    "bulk_file",
    Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("bulk_job.id"), nullable=False),
    Column("ordinal", Integer, nullable=False),  # its number in the file URL
    Column("kind", String(8), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),  # bytes (UTF-8)
    Column("chunks", Integer, nullable=False),
    UniqueConstraint("job_id", "ordinal", name="uq_bulk_file_job_ordinal"),
)

# A bounded piece of a file's NDJSON text (whole lines), so files stream in and out in pieces.
BULK_CHUNK = table(
    "bulk_chunk",
    Column("file_id", _ROW_ID, ForeignKey("bulk_file.id"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("data", Text, nullable=False),
)

# The client that started a job, when access control is on: only it may poll, fetch or cancel.
BULK_JOB_CLIENT = table(
    "bulk_job_client",
    Column("job_id", String(32), ForeignKey("bulk_job.id"), primary_key=True),
    # the owner: a digest of the token's issuer and client id (Principal.owner), or "anonymous"
    Column("client_id", String(128), nullable=False),
)
