"""The store's public schema API: what the packages above it may use of the store's database.

Two uses, one module:
- **Querying the store's versions and indexes** (the search package): the version and index tables
  by name, and what "valid at a commit" means. A version counts at ``seq`` S from its own seq until
  the seq of the version that replaced it, an index row from ``seq_from`` until ``seq_to``; the rule
  lives here, whatever compiles the statement.
- **Keeping tables of one's own** (bulk export jobs, registered clients): a package declares them in
  a module of its own with ``table(...)``; the revisions in ``store/migrations`` create them with
  the store's tables (``migration.prepare_schema``, at start-up or by ``fhir-bridge db upgrade``).
  A new table, column or index needs a new revision: tests/test_migrations.py fails while the
  models and the revisions disagree. The owner reads and writes them with SQLAlchemy Core on the
  store's ``Engines``; no other package touches them. Tables kept in a database of their own (the
  audit trail: a file of its own on SQLite) are declared on a ``MetaData()`` of the owner's instead,
  on the engines ``database.engines_beside`` gives, and created by ``database.ensure_tables``.

No package but the store imports ``store.tables`` (the import contract in pyproject.toml checks it).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import ColumnElement, FromClause, MetaData, Table, and_, or_
from sqlalchemy.sql.schema import SchemaItem

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
    STUDY_FACTS,
    TOKEN,
    URI,
    VERSION,
    SQLModel,
)
from fhir_bridge.store.versions import StoredVersion

__all__ = [
    "COMPOSITE",
    "DATE",
    "DATE_WIDTH",
    "INDEX_TABLES",
    "NUMBER",
    "QUANTITY",
    "REFERENCE",
    "RESOURCE",
    "STORE_METADATA",
    "STRING",
    "STUDY_FACTS",
    "TOKEN",
    "URI",
    "VERSION",
    "VERSION_COLUMNS",
    "index_valid",
    "table",
    "version_valid",
]

STORE_METADATA: MetaData = SQLModel.metadata  # every table of the store's database, the store's own and its owners'

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


assert len(VERSION_COLUMNS) == len(fields(StoredVersion))  # StoredVersion.of_row reads them in order


def table(name: str, *items: SchemaItem, **options: Any) -> Table:
    """A table of the store's database, owned by the caller's package, created by a migration revision."""
    return Table(name, STORE_METADATA, *items, **options)


def version_valid(at_seq: int, table: FromClause = VERSION) -> ColumnElement[bool]:
    """The version of each resource that was current at ``at_seq`` (deletions included)."""
    return and_(table.c.seq <= at_seq, or_(table.c.superseded.is_(None), table.c.superseded > at_seq))


def index_valid(table: FromClause, at_seq: int) -> ColumnElement[bool]:
    """The index rows of the versions current at ``at_seq``."""
    return and_(table.c.seq_from <= at_seq, or_(table.c.seq_to.is_(None), table.c.seq_to > at_seq))
