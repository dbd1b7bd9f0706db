"""``fhir-bridge db``: the database's schema (upgrade, current) and its life (backup, restore, copy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fhir_bridge.cli.common import EXIT_CONFIGURATION, add_database, add_key_file, refuse, services_from
from fhir_bridge.errors import ConfigurationError


def refused(error: ConfigurationError) -> int:
    print(f"fhir-bridge: {error}", file=sys.stderr)
    return EXIT_CONFIGURATION


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


def backup(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        try:
            manifest = services.backup(Path(arguments.file))
        except ConfigurationError as error:
            return refused(error)
    print(
        f"{arguments.file}: {manifest['resources']} resources, {manifest['versions']} versions up to seq "
        f"{manifest['last_seq']} (schema {manifest['revision']}); keys by fingerprint only"
    )
    return 0


def restore(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        try:
            manifest = services.restore(Path(arguments.file), force=arguments.force)
        except ConfigurationError as error:
            return refused(error)
    print(
        f"restored {arguments.file} ({manifest['created']}): {manifest['resources']} resources, "
        f"{manifest['versions']} versions up to seq {manifest['last_seq']}; a new cursor key is made on first start"
    )
    return 0


def copy(arguments: argparse.Namespace) -> int:
    shown: dict[str, int] = {}

    def progress(table: str, rows: int) -> None:
        if rows - shown.get(table, 0) >= 100_000:
            shown[table] = rows
            print(f"  {table}: {rows} rows", file=sys.stderr)

    with services_from(arguments) as services:
        try:
            copied = services.copy_to(arguments.to, progress)
        except ConfigurationError as error:
            return refused(error)
    target = arguments.to.split("@")[-1]
    print(
        f"copied to {target}: {copied.get('resource', 0)} resources, {copied.get('resource_version', 0)} versions "
        f"(commit sequence kept), {copied.get('audit_event', 0)} audit records"
    )
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
    saving = actions.add_parser("backup", help="back up the store and its audit trail (online; keys by fingerprint)")
    saving.add_argument("file", help="the backup file to write (a tar archive)")
    add_database(saving)
    add_key_file(saving)
    saving.set_defaults(handler=backup)
    restoring = actions.add_parser("restore", help="restore a backup into an empty database")
    restoring.add_argument("file", help="a file written by `fhir-bridge db backup`")
    restoring.add_argument(
        "--force", action="store_true", help="restore even under another pseudonym key (its pseudonyms will not match)"
    )
    add_database(restoring)
    add_key_file(restoring)
    restoring.set_defaults(handler=restore)
    copying = actions.add_parser("copy", help="copy the store (every version, its commit order) to another database")
    copying.add_argument("--to", required=True, help="the empty target, e.g. postgresql+psycopg://fhir@db:5432/fhir")
    add_database(copying)
    copying.set_defaults(handler=copy)
