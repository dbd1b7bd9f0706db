"""How a package keeps tables of its own in the store's database: the store's public schema API.

Packages that keep state beside the resources (bulk export jobs, registered clients) declare their
tables in a module of their own with ``table(...)``; ``database.prepare_schema`` creates them with
the store's tables at start-up and adds indexes declared later to existing tables, idempotently and
under the schema lock when several workers start at once. The owner reads and writes them with
SQLAlchemy Core on the store's ``Engines``; no other package touches them, and no package but the
store touches ``store.tables`` (the import contract in pyproject.toml checks both).

A table is declared when its module is imported, so the owner's service also calls
``database.ensure_tables`` when it is built: its tables then exist even in a database prepared by a
process that never imported it (one read when they do).

Tables kept in a database of their own (the audit trail: a file of its own on SQLite) are declared
on a ``MetaData()`` of the owner's instead, on the engines ``database.engines_beside`` gives, and
created by ``database.ensure_tables`` alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, Table
from sqlalchemy.sql.schema import SchemaItem

from fhir_bridge.store.tables import SQLModel

STORE_METADATA: MetaData = SQLModel.metadata  # every table of the store's database, the store's own and its owners'


def table(name: str, *items: SchemaItem, **options: Any) -> Table:
    """A table of the store's database, owned by the caller's package and created by ``prepare_schema``."""
    return Table(name, STORE_METADATA, *items, **options)
