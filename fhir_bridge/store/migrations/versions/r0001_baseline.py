"""Baseline: the schema of fhir-bridge 0.1 (the store, bulk export and token endpoint tables).

Frozen here as it was, whatever the models say later: later changes are later revisions.
A store made before migrations existed (no ``alembic_version``) is brought to this revision by
the same code: what it has is kept, what it lacks (tables, indexes, the facts every store holds)
is added, so ``fhir-bridge db upgrade`` works on any earlier store.

Revision ID: r0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: an alias of the rowid
_META = sa.MetaData()


def _table(name: str, *items: sa.schema.SchemaItem) -> sa.Table:
    return sa.Table(name, _META, *items)


def _index_table(name: str, *columns: sa.Column, value_columns: tuple[str, ...], extra: tuple = ()) -> sa.Table:
    return _table(
        name,
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("res_pk", _ROW_ID, sa.ForeignKey("resource.pk"), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("seq_from", sa.BigInteger(), nullable=False),
        sa.Column("seq_to", sa.BigInteger(), nullable=True),
        *columns,
        sa.Index(f"ix_{name}_value", "res_type", "param", *value_columns),
        sa.Index(f"ix_{name}_pk", "res_pk", "param", "seq_to"),
        *extra,
    )


INFO = _table(
    "store_info",
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
CLOCK = _table(
    "commit_clock",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("last_updated", sa.BigInteger(), nullable=False),
)
_table(
    "resource",
    sa.Column("pk", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("last_updated", sa.BigInteger(), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("content", sa.Text(), nullable=True),
    sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    sa.Index("ix_resource_type_seq", "res_type", "seq"),
)
_table(
    "resource_version",
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("res_pk", _ROW_ID, nullable=False),
    sa.Column("superseded", sa.BigInteger(), nullable=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("last_updated", sa.BigInteger(), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("content", sa.Text(), nullable=True),
    sa.UniqueConstraint("res_type", "res_id", "version", name="uq_version_type_id_version"),
    sa.Index("ix_version_type_seq", "res_type", "seq", "superseded", "deleted", "res_pk"),
    sa.Index("ix_version_last_updated", "last_updated"),
    sa.Index("ix_version_type_pk", "res_type", "res_pk", "superseded", "seq", "deleted"),
    sa.Index("ix_version_pk", "res_pk", "superseded"),
)
_index_table(
    "idx_token",
    sa.Column("system", sa.Text()),
    sa.Column("code", sa.Text()),
    sa.Column("text", sa.Text()),
    sa.Column("type_system", sa.Text()),
    sa.Column("type_code", sa.Text()),
    value_columns=("code", "system"),
)
_index_table(
    "idx_string",
    sa.Column("value", sa.Text().with_variant(sa.Text(collation="C"), "postgresql"), nullable=False),
    sa.Column("exact", sa.Text(), nullable=False),
    value_columns=("value",),
)
DATE = _index_table(
    "idx_date",
    sa.Column("low", sa.BigInteger(), nullable=False),
    sa.Column("high", sa.BigInteger(), nullable=False),
    value_columns=("low", "high"),
    extra=(sa.Index("ix_idx_date_high", "res_type", "param", "high"),),
)
_index_table(
    "idx_number",
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("low", sa.Float(), nullable=False),
    sa.Column("high", sa.Float(), nullable=False),
    value_columns=("value",),
)
_index_table(
    "idx_quantity",
    sa.Column("system", sa.Text()),
    sa.Column("code", sa.Text()),
    sa.Column("value", sa.Float()),
    sa.Column("low", sa.Float()),
    sa.Column("high", sa.Float()),
    value_columns=("value",),
)
_index_table(
    "idx_reference",
    sa.Column("target_type", sa.String(64)),
    sa.Column("target_id", sa.Text()),
    sa.Column("url", sa.Text()),
    sa.Column("identifier_system", sa.Text()),
    sa.Column("identifier_value", sa.Text()),
    value_columns=("target_id", "target_type"),
    extra=(sa.Index("ix_idx_reference_target", "target_type", "target_id"),),
)
_index_table("idx_uri", sa.Column("uri", sa.Text(), nullable=False), value_columns=("uri",))
_index_table(
    "idx_composite",
    sa.Column("c1_system", sa.Text()),
    sa.Column("c1_code", sa.Text()),
    sa.Column("c2_system", sa.Text()),
    sa.Column("c2_code", sa.Text()),
    sa.Column("c2_text", sa.Text()),
    sa.Column("c2_low", sa.Float()),
    sa.Column("c2_high", sa.Float()),
    value_columns=("c1_code", "c2_code"),
)
DATE_WIDTH = _table(
    "idx_date_width",
    sa.Column("res_type", sa.String(64), primary_key=True),
    sa.Column("param", sa.String(64), primary_key=True),
    sa.Column("width", sa.BigInteger(), nullable=False),
)
_table(
    "bulk_job",
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request", sa.Text(), nullable=False),
    sa.Column("parameters", sa.Text(), nullable=False),
    sa.Column("at_seq", sa.BigInteger(), nullable=False),
    sa.Column("transaction_time", sa.BigInteger(), nullable=False),
    sa.Column("created", sa.BigInteger(), nullable=False),
    sa.Column("finished", sa.BigInteger(), nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires", sa.BigInteger(), nullable=True),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.Column("exported", sa.BigInteger(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index("ix_bulk_job_status", "status", "lease_expires"),
)
_table(
    "bulk_file",
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("bulk_job.id"), nullable=False),
    sa.Column("ordinal", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("chunks", sa.Integer(), nullable=False),
    sa.UniqueConstraint("job_id", "ordinal", name="uq_bulk_file_job_ordinal"),
)
_table(
    "bulk_chunk",
    sa.Column("file_id", _ROW_ID, sa.ForeignKey("bulk_file.id"), primary_key=True),
    sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("data", sa.Text(), nullable=False),
)
_table(
    "bulk_job_client",
    sa.Column("job_id", sa.String(32), sa.ForeignKey("bulk_job.id"), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
)
_table(
    "auth_client",
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("jwks", sa.Text(), nullable=True),
    sa.Column("jwks_url", sa.Text(), nullable=True),
    sa.Column("created", sa.BigInteger(), nullable=False),
)
_table(
    "auth_assertion",
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("jti", sa.String(256), primary_key=True),
    sa.Column("expires", sa.BigInteger(), nullable=False, index=True),
)

# store_info's schema_version: 1 before migrations; 2 tells fhir-bridge 0.1 (which refuses a store
# newer than its own) that this store is managed by Alembic now.
SCHEMA_VERSION = "2"


def upgrade() -> None:
    connection = op.get_bind()
    for table in _META.sorted_tables:  # referenced tables first; kept where they exist
        table.create(connection, checkfirst=True)
        for index in table.indexes:  # an index a store made before it was declared lacks
            index.create(connection, checkfirst=True)
    known = dict(connection.execute(sa.select(INFO.c.key, INFO.c.value)).all())
    if "cursor_secret" not in known:
        connection.execute(sa.insert(INFO).values(key="cursor_secret", value=secrets.token_hex(32)))
    if "schema_version" in known:
        connection.execute(sa.update(INFO).where(INFO.c.key == "schema_version").values(value=SCHEMA_VERSION))
    else:
        connection.execute(sa.insert(INFO).values(key="schema_version", value=SCHEMA_VERSION))
    if connection.execute(sa.select(CLOCK.c.id)).first() is None:
        connection.execute(sa.insert(CLOCK).values(id=1, seq=0, last_updated=0))
    if connection.execute(sa.select(DATE_WIDTH.c.param).limit(1)).first() is None:
        # a store made before idx_date_width existed: record the widths of what is indexed
        widest = sa.select(DATE.c.res_type, DATE.c.param, sa.func.max(DATE.c.high - DATE.c.low)).group_by(
            DATE.c.res_type, DATE.c.param
        )
        connection.execute(sa.insert(DATE_WIDTH).from_select(["res_type", "param", "width"], widest))


def downgrade() -> None:
    raise NotImplementedError("fhir-bridge upgrades only: restore a backup to go back")
