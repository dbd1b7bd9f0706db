"""Schema migrations: the store's database is versioned by Alembic (the SQLAlchemy project's tool).

The revisions ship inside the package (``store/migrations``), so an installed fhir-bridge upgrades
its database wherever it runs from. ``prepare_schema`` runs at start-up, in one transaction under
the schema set-up lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), so several
workers starting together see one another's work and never migrate twice:

- an empty database is created at the newest revision (head);
- a database at head is used as it is;
- an older one (or one made before migrations, unversioned) is upgraded only when asked (the
  ``upgrade`` argument: ``fhir-bridge db upgrade``, ``serve --upgrade-schema`` or the setting
  ``FHIR_BRIDGE_UPGRADE_SCHEMA``); otherwise the start is refused with a one-line reason, so an
  operator upgrades on purpose, after a backup;
- a database at a revision this fhir-bridge does not know (made by a newer one) is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.database import Engines, lock_schema_setup

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start context lines are noise; we say what changed
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
_STORE_MARK = "store_info"  # a database holding this table holds a store (versioned or not)

UPGRADE_HINT = "run `fhir-bridge db upgrade` (after `fhir-bridge db backup`), or start with --upgrade-schema"


def _config(connection: Connection | None = None, metadata: MetaData | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["target_metadata"] = metadata
    return config


def head() -> str:
    """The newest revision this fhir-bridge knows."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: its revision (None: unversioned) and whether it holds a store."""

    revision: str | None
    populated: bool
    head: str

    @property
    def current(self) -> bool:
        return self.revision == self.head

    @property
    def known(self) -> bool:
        return self.revision is None or _known(self.revision)

    def describe(self) -> str:
        if not self.populated and self.revision is None:
            return f"empty (this fhir-bridge creates it at revision {self.head})"
        if self.current:
            return f"{self.revision} (head: current)"
        if self.revision is None:
            return f"unversioned (made before migrations; head is {self.head}): {UPGRADE_HINT}"
        if not self.known:
            return f"{self.revision}, unknown to this fhir-bridge (a newer one made it): upgrade fhir-bridge"
        return f"{self.revision} (head is {self.head}): {UPGRADE_HINT}"


def _known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for unknown or malformed ids
        return False


def state_of(connection: Connection) -> SchemaState:
    revision = MigrationContext.configure(connection).get_current_revision()
    populated = inspect(connection).has_table(_STORE_MARK)
    return SchemaState(revision, populated, head())


def schema_state(engines: Engines) -> SchemaState:
    with engines.reader.connect() as connection:
        return state_of(connection)


@contextmanager
def _locked(engines: Engines) -> Iterator[Connection]:
    with engines.writer.begin() as connection:
        if engines.dialect == "postgresql":
            lock_schema_setup(connection)
        yield connection


def _upgrade(connection: Connection) -> None:
    before = state_of(connection).describe()
    command.upgrade(_config(connection), "head")
    log.info("database schema: %s -> %s", before, head())


def prepare_schema(engines: Engines, *, upgrade: bool = False) -> SchemaState:
    """Make the database ready for this fhir-bridge, or refuse (ConfigurationError, one line) to start on it."""
    with engines.reader.connect() as connection:
        state = state_of(connection)
    if state.current:
        return state  # the common start: one read, no lock
    with _locked(engines) as connection:
        state = state_of(connection)  # again, under the lock: another worker may have done it
        if state.current:
            return state
        if not state.known:
            raise ConfigurationError(f"the database schema is at revision {state.describe()}")
        if state.populated and not upgrade:
            raise ConfigurationError(f"the database schema is {state.describe()}")
        _upgrade(connection)
        return state_of(connection)


def upgrade_schema(engines: Engines) -> tuple[SchemaState, SchemaState]:
    """``fhir-bridge db upgrade``: the state before and after."""
    before = schema_state(engines)
    return before, prepare_schema(engines, upgrade=True)


def schema_differences(engines: Engines, metadata: MetaData) -> list[Any]:
    """What differs between the database's schema and ``metadata`` (empty: the models and the
    migrations agree; a table changed without a migration shows here)."""
    with engines.reader.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_object": _store_tables_only, "compare_type": True},
        )
        return list(compare_metadata(context, metadata))


def _store_tables_only(item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "table" and reflected and (compare_to is None or name == VERSION_TABLE))
