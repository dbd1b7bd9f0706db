"""The store's schema as the packages above it may use it: the version and index tables, and validity.

The store owns its tables (``store.tables`` is private to it) and what "valid at a commit" means:
a version counts at ``seq`` S from its own seq until the seq of the version that replaced it, an
index row from ``seq_from`` until ``seq_to``. The search package builds its statements against the
names exported here, so the rule lives in one place whatever compiles the statement.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_bridge.store.tables import (
    COMPOSITE,
    DATE,
    DATE_WIDTH,
    INDEX_TABLES,
    NUMBER,
    QUANTITY,
    REFERENCE,
    RESOURCE,
    STRING,
    TOKEN,
    URI,
    VERSION,
)

__all__ = [
    "COMPOSITE",
    "DATE",
    "DATE_WIDTH",
    "INDEX_TABLES",
    "NUMBER",
    "QUANTITY",
    "REFERENCE",
    "RESOURCE",
    "STRING",
    "TOKEN",
    "URI",
    "VERSION",
    "VERSION_COLUMNS",
    "index_valid",
    "version_valid",
]

# The columns of a version row in the order of ``StoredVersion``'s fields: a statement that selects
# them first can be read back as StoredVersions (``StoredVersion.of_row``).
VERSION_COLUMNS = (
    VERSION.c.res_type,
    VERSION.c.res_id,
    VERSION.c.version,
    VERSION.c.seq,
    VERSION.c.last_updated,
    VERSION.c.deleted,
    VERSION.c.content,
    VERSION.c.method,
    VERSION.c.res_pk,
)


def version_valid(at_seq: int, table: FromClause = VERSION) -> ColumnElement[bool]:
    """The version of each resource that was current at ``at_seq`` (deletions included)."""
    return and_(table.c.seq <= at_seq, or_(table.c.superseded.is_(None), table.c.superseded > at_seq))


def index_valid(table: FromClause, at_seq: int) -> ColumnElement[bool]:
    """The index rows of the versions current at ``at_seq``."""
    return and_(table.c.seq_from <= at_seq, or_(table.c.seq_to.is_(None), table.c.seq_to > at_seq))
