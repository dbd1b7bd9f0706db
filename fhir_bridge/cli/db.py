"""``fhir-bridge db``: the database's schema (upgrade, current) and its life (backup, restore, copy)."""

from __future__ import annotations

import argparse
from typing import Any

from fhir_bridge.cli.common import EXIT_CONFIGURATION, add_database, refuse, services_from
from fhir_bridge.errors import ConfigurationError


def current(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        state = services.schema_state()
    print(f"schema: {state.describe()}")
    return 0 if state.current else EXIT_CONFIGURATION


def upgrade(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        try:
            before, after = services.upgrade_schema()
        except ConfigurationError as error:
            return refuse(error)
    if before.revision == after.revision and before.populated:
        print(f"schema: {after.revision} (head): nothing to do")
    else:
        print(f"schema: {before.revision or ('unversioned' if before.populated else 'empty')} -> {after.revision}")
    return 0


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="the database: schema upgrades, backup, restore, copy to PostgreSQL")
    actions = db.add_subparsers(dest="action", required=True)
    showing = actions.add_parser("current", help="the schema's revision and whether it is current (exit 2: not)")
    add_database(showing)
    showing.set_defaults(handler=current)
    upgrading = actions.add_parser("upgrade", help="upgrade (or create) the schema to this fhir-bridge's newest")
    add_database(upgrading)
    upgrading.set_defaults(handler=upgrade)
