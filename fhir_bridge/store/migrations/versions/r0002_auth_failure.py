"""The token endpoint's failure counts (``auth_failure``: its lockout, counted in the database by every worker).

A store that fhir-bridge made before migrations may have it already (``ensure_tables`` created it
there): kept as it is.

Revision ID: r0002
Revises: r0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("auth_failure"):
        op.create_table(
            "auth_failure",
            sa.Column("key", sa.String(length=400), nullable=False),
            sa.Column("window_start", sa.BigInteger(), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    indexes = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("auth_failure")}
    if "ix_auth_failure_window_start" not in indexes:
        op.create_index("ix_auth_failure_window_start", "auth_failure", ["window_start"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("fhir-bridge upgrades only: restore a backup to go back")
