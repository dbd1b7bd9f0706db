"""The current ImagingStudies' facts the catalogue counts over (``study_fact``, see ``store/tables.py``).

Created when missing and filled from the current index rows of the current ImagingStudies (what the
write path keeps from now on, in the transaction that moves the commit clock): one ``subject`` row
per study with its earliest start, and a row per value of its ``modality``, ``bodysite``,
``segmentation`` and ``segmentation-method`` tokens, per Device it names as ``performer`` and one
``segment`` row when it has segments, each with the study's subject (the Patient id its ``subject``
reference names; NULL when none). Rows already there are replaced. At archive size (1,000,000
studies) the fill reads the studies' index rows once (see docs/performance.md).

PostgreSQL also gets statistics on the value columns that go together (``CREATE STATISTICS (mcv)``
on ``idx_token (res_type, param, code)`` and ``study_fact (param, code)``): without them the planner
takes ``param = 'gender'`` and ``code = 'female'`` as independent and expects a handful of rows where
half the Patients match, and answers a catalogue count with one probe per Patient instead of a hash
join from the rarest criterion.

Revision ID: r0004
Revises: r0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None

# the current studies and their subjects (NULL for a study that names no Patient)
_SUBJECTS = """
    SELECT study.pk AS res_pk, subject.target_id AS subject
    FROM resource study
    LEFT JOIN (
        SELECT DISTINCT res_pk, target_id FROM idx_reference
        WHERE res_type = 'ImagingStudy' AND param = 'subject' AND target_type = 'Patient' AND seq_to IS NULL
    ) subject ON subject.res_pk = study.pk
    WHERE study.res_type = 'ImagingStudy' AND NOT study.deleted
"""
_COLUMNS = "INSERT INTO study_fact (res_pk, param, system, code, subject, started) "
_FILL = [
    # one row per study (and subject), with its earliest start
    _COLUMNS + "SELECT s.res_pk, 'subject', NULL, NULL, s.subject, ("
    "SELECT min(low) FROM idx_date d WHERE d.res_pk = s.res_pk AND d.res_type = 'ImagingStudy' "
    f"AND d.param = 'started' AND d.seq_to IS NULL) FROM ({_SUBJECTS}) s",
    # the values of its kept token parameters
    _COLUMNS + "SELECT s.res_pk, t.param, t.system, t.code, s.subject, NULL FROM ("
    "SELECT DISTINCT res_pk, param, system, code FROM idx_token WHERE res_type = 'ImagingStudy' "
    "AND param IN ('modality', 'bodysite', 'segmentation', 'segmentation-method') AND seq_to IS NULL"
    f") t JOIN ({_SUBJECTS}) s ON s.res_pk = t.res_pk",
    # the Devices its series name as performer
    _COLUMNS + "SELECT s.res_pk, 'performer', NULL, r.target_id, s.subject, NULL FROM ("
    "SELECT DISTINCT res_pk, target_id FROM idx_reference WHERE res_type = 'ImagingStudy' "
    "AND param = 'performer' AND target_type = 'Device' AND seq_to IS NULL"
    f") r JOIN ({_SUBJECTS}) s ON s.res_pk = r.res_pk",
    # whether it has segments
    _COLUMNS + "SELECT s.res_pk, 'segment', NULL, NULL, s.subject, NULL FROM ("
    "SELECT DISTINCT res_pk FROM idx_reference WHERE res_type = 'ImagingStudy' AND param = 'segment' "
    f"AND seq_to IS NULL) r JOIN ({_SUBJECTS}) s ON s.res_pk = r.res_pk",
]
_STATISTICS = {  # PostgreSQL: name -> (table, columns whose values go together)
    "st_idx_token_value": ("idx_token", ["res_type", "param", "code"]),
    "st_study_fact_value": ("study_fact", ["param", "code"]),
}
_INDEXES = {
    "ix_study_fact_pk": (["res_pk"], None),
    "ix_study_fact_value": (["param", "code", "system", "subject"], ["res_pk"]),
    "ix_study_fact_subject": (["param", "subject", "started"], None),
}


def upgrade() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("study_fact"):
        op.create_table(
            "study_fact",
            sa.Column("res_pk", sa.BigInteger(), nullable=False),
            sa.Column("param", sa.String(length=64), nullable=False),
            sa.Column("system", sa.Text(), nullable=True),
            sa.Column("code", sa.Text(), nullable=True),
            sa.Column("subject", sa.Text(), nullable=True),
            sa.Column("started", sa.BigInteger(), nullable=True),
        )
    found = {index["name"] for index in sa.inspect(bind).get_indexes("study_fact")}
    for name, (columns, included) in _INDEXES.items():
        if name not in found:
            op.create_index(name, "study_fact", columns, unique=False, postgresql_include=included or [])
    bind.execute(sa.text("DELETE FROM study_fact"))
    for statement in _FILL:
        bind.execute(sa.text(statement))
    if bind.dialect.name == "postgresql":
        for name, (table, columns) in _STATISTICS.items():
            bind.execute(sa.text(f"CREATE STATISTICS IF NOT EXISTS {name} (mcv) ON {', '.join(columns)} FROM {table}"))
            bind.execute(sa.text(f"ANALYZE {table}"))  # (a sample: seconds at archive size)


def downgrade() -> None:
    raise NotImplementedError("fhir-bridge upgrades only: restore a backup to go back")
