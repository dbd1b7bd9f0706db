"""Moving a store to another database (``fhir-bridge db copy``): every row as it is.

The target is created at the newest schema and must hold nothing yet. Every table is copied with
its keys unchanged: each version keeps its ``seq`` and ``lastUpdated``, the commit clock goes on
from where the source stopped, and resource pks (which the index rows refer to) stay, so a
harvester that had reached ``_since``/``seq`` N on the source continues on the target with the
writes after N. The store's tables are copied in one transaction (a failure leaves the target
empty); PostgreSQL's id sequences are then moved past the copied ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Integer, Table, delete, func, select, text

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.database import Engines, ensure_tables
from fhir_bridge.store.migration import prepare_schema, schema_state
from fhir_bridge.store.store import insert_many
from fhir_bridge.store.tables import CLOCK, INFO, RESOURCE

BATCH = 5000  # rows read and written at a time


class CopyError(ConfigurationError):
    """A copy that cannot be made: the message says why."""


def copy_store(
    source: Engines,
    target: Engines,
    tables: Sequence[Table],
    *,
    audit: tuple[Engines, Engines, Sequence[Table]] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy the store's ``tables`` (and the audit trail's: ``(source, target, tables)``) from
    ``source`` into the empty ``target``; returns the rows copied per table."""
    state = schema_state(source)
    if not state.populated:
        raise CopyError("the source database holds no store")
    if not state.current:
        raise CopyError(f"the source's schema is {state.describe()}")
    prepare_schema(target)
    with target.reader.connect() as connection:
        if connection.execute(select(func.count()).select_from(RESOURCE)).scalar_one():
            raise CopyError("the target database already holds resources: copy into an empty database")
    copied: dict[str, int] = {}
    with source.reader.connect() as reading, target.writer.begin() as writing:
        # the facts the new schema was given (its own cursor secret, an empty clock) give way to the source's
        writing.execute(delete(INFO))
        writing.execute(delete(CLOCK))
        for table in tables:
            copied[table.name] = _copy_table(reading, writing, table, progress)
    if target.dialect == "postgresql":
        _move_sequences(target, tables)
    if audit is not None:
        audit_source, audit_target, audit_tables = audit
        ensure_tables(audit_target, audit_tables)
        with audit_source.reader.connect() as reading, audit_target.writer.begin() as writing:
            for table in audit_tables:
                if writing.execute(select(func.count()).select_from(table)).scalar_one():
                    raise CopyError(f"the target's {table.name} is not empty: copy into an empty database")
                copied[table.name] = _copy_table(reading, writing, table, progress)
        if audit_target.dialect == "postgresql":
            _move_sequences(audit_target, audit_tables)
    return copied


def _copy_table(
    reading: Connection, writing: Connection, table: Table, progress: Callable[[str, int], None] | None
) -> int:
    order = list(table.primary_key.columns) or list(table.columns)
    result = reading.execution_options(stream_results=True, yield_per=BATCH).execute(select(table).order_by(*order))
    count = 0
    for rows in result.partitions(BATCH):
        insert_many(writing, table, [dict(row._mapping) for row in rows])
        count += len(rows)
        if progress:
            progress(table.name, count)
    return count


def _move_sequences(target: Engines, tables: Sequence[Table]) -> None:
    """Set each serial id's sequence past the copied ids (rows were inserted with their ids)."""
    with target.writer.begin() as connection:
        for table in tables:
            for column in table.primary_key.columns:
                if not isinstance(column.type, Integer) or column.autoincrement is False:
                    continue
                sequence = connection.execute(
                    text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": column.name}
                ).scalar_one()
                if sequence is None:
                    continue
                highest: Any = connection.execute(select(func.max(column))).scalar_one()
                connection.execute(
                    text("SELECT setval(:sequence, :value, :called)"),
                    {"sequence": sequence, "value": highest or 1, "called": highest is not None},
                )
