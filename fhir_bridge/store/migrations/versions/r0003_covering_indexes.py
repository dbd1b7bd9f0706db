"""Covering value indexes (PostgreSQL) and the per-type count of current resources (every database).

- PostgreSQL: each index table's value index (``ix_idx_<type>_value``, and ``ix_idx_date_high``)
  gets ``INCLUDE (res_pk, seq_from, seq_to)``: what a search reads of an index row besides its value,
  so that a criterion's candidates and a count come from the index alone (index-only scans, once
  VACUUM has set the visibility map) instead of one heap fetch per match. An index that lacks them is
  rebuilt (``CREATE INDEX`` under the upgrade's lock: writes wait; at archive size this takes minutes,
  see docs/performance.md). SQLite has no INCLUDE; adding the columns to the key there would grow
  every index of a store that meets its targets without them, so SQLite's indexes are left as they are.
- ``resource_count``: how many resources of each type are current, counted here from ``resource``
  and kept from now on by the write path in the transaction that moves the commit clock.

Revision ID: r0003
Revises: r0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None

_COVERED = ["res_pk", "seq_from", "seq_to"]
# index -> (table, key columns, included columns), as in the models at this revision
_COVERING = {
    "ix_idx_token_value": ("idx_token", ["res_type", "param", "code", "system"], _COVERED),
    "ix_idx_string_value": ("idx_string", ["res_type", "param", "value"], _COVERED),
    "ix_idx_date_value": ("idx_date", ["res_type", "param", "low", "high"], _COVERED),
    "ix_idx_date_high": ("idx_date", ["res_type", "param", "high"], ["low", *_COVERED]),
    "ix_idx_number_value": ("idx_number", ["res_type", "param", "value"], _COVERED),
    "ix_idx_quantity_value": ("idx_quantity", ["res_type", "param", "value"], _COVERED),
    "ix_idx_reference_value": ("idx_reference", ["res_type", "param", "target_id", "target_type"], _COVERED),
    "ix_idx_uri_value": ("idx_uri", ["res_type", "param", "uri"], _COVERED),
    "ix_idx_composite_value": ("idx_composite", ["res_type", "param", "c1_code", "c2_code"], _COVERED),
}


def _cover_indexes() -> None:
    inspector = sa.inspect(op.get_bind())
    for name, (table, columns, included) in _COVERING.items():
        found = {index["name"]: index for index in inspector.get_indexes(table)}
        index = found.get(name)
        if index is not None and list(index.get("dialect_options", {}).get("postgresql_include") or []) == included:
            continue
        if index is not None:
            op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False, postgresql_include=included)


def _count_resources() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("resource_count"):
        op.create_table(
            "resource_count",
            sa.Column("res_type", sa.String(length=64), nullable=False),
            sa.Column("current", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("res_type"),
        )
    bind.execute(sa.text("DELETE FROM resource_count"))
    bind.execute(
        sa.text(
            "INSERT INTO resource_count (res_type, current) "
            "SELECT res_type, count(*) FROM resource WHERE NOT deleted GROUP BY res_type"
        )
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _cover_indexes()
    _count_resources()


def downgrade() -> None:
    raise NotImplementedError("fhir-bridge upgrades only: restore a backup to go back")
