"""Alembic's environment for the store's migrations, run only through ``fhir_bridge.store.migration``.

That module hands over the connection (already in the transaction that holds the schema set-up lock)
and, when comparing or generating, the metadata of every table of the store's database.
"""

from __future__ import annotations

from typing import Any

from alembic import context

config = context.config
target_metadata = config.attributes.get("target_metadata")


def include_object(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Compare only the store's tables: others in the same database (the audit trail's on PostgreSQL,
    a site's own) are not the store's business."""
    return not (type_ == "table" and reflected and compare_to is None)


context.configure(
    connection=config.attributes["connection"],
    target_metadata=target_metadata,
    include_object=include_object,
    render_as_batch=True,  # SQLite alters tables by copying them: generated migrations must batch
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
