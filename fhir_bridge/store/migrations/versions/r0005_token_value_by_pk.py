"""The token value index keyed by resource after the code: ``ix_idx_token_value`` on
``(res_type, param, code, res_pk)``, with ``system`` (and, on PostgreSQL, ``seq_from``, ``seq_to``)
included instead of in the key.

The rows of one code then come in pk order. An index-driven search (a month of one modality) merges
them with the month's pks and stops at the page: at scale 0.05 it read 2,751 of the 6,233 CT rows
(1.1 ms) where the hash join read them all (2.1 ms), and the share read falls as the store grows
(about 2,500 rows at any size, against 125,000 at the full size). A search by code and system (an
identifier) finds the code in the key and checks the system on the index row.

How it is rebuilt: the new index is built under a temporary name first, in the upgrade's
transaction (``CREATE INDEX``: writes to ``idx_token`` wait for the build, reads go on with the old
index), then the old one is dropped and the new one renamed, which holds the table's exclusive lock
only for that moment. ``CREATE INDEX CONCURRENTLY`` would let writes go on too, but cannot run in
the upgrade's transaction (which holds the schema set-up lock), and a failed build leaves an invalid
index behind; an upgrade is an operator's step (``fhir-bridge db upgrade``), so the plain build was
chosen. At the full archive size (``idx_token`` 8.3 GiB) this takes a few minutes. SQLite gets the
same key (it has no INCLUDE); its index is dropped and built again in the upgrade's transaction
(readers keep their snapshot meanwhile).

Revision ID: r0005
Revises: r0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None

_NAME, _TABLE = "ix_idx_token_value", "idx_token"
_KEY = ["res_type", "param", "code", "res_pk"]
_INCLUDED = ["system", "seq_from", "seq_to"]  # PostgreSQL only: SQLite has no INCLUDE


def upgrade() -> None:
    bind = op.get_bind()
    included = _INCLUDED if bind.dialect.name == "postgresql" else []
    found = {index["name"]: index for index in sa.inspect(bind).get_indexes(_TABLE)}
    index = found.get(_NAME)
    if (
        index is not None
        and list(index["column_names"]) == _KEY
        and list(index.get("dialect_options", {}).get("postgresql_include") or []) == included
    ):
        return
    if bind.dialect.name != "postgresql":  # SQLite: readers keep their snapshot (WAL) while it is rebuilt
        if index is not None:
            op.drop_index(_NAME, table_name=_TABLE)
        op.create_index(_NAME, _TABLE, _KEY, unique=False)
        return
    building = f"{_NAME}_r0005"
    if building in found:  # left behind by an earlier attempt made outside this revision's transaction
        op.drop_index(building, table_name=_TABLE)
    op.create_index(building, _TABLE, _KEY, unique=False, postgresql_include=_INCLUDED)
    if index is not None:
        op.drop_index(_NAME, table_name=_TABLE)
    op.execute(sa.text(f"ALTER INDEX {building} RENAME TO {_NAME}"))


def downgrade() -> None:
    raise NotImplementedError("fhir-bridge upgrades only: restore a backup to go back")
