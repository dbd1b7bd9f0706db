"""Backups of the store's database and its audit trail, and their restore; never a key.

A backup is one tar file: ``manifest.json`` (what was backed up: the schema revision, the last
commit ``seq``, counts, the keys' fingerprints and the store's non-secret facts) and the data:

- SQLite: ``store.sqlite`` and ``audit.sqlite``, each made with SQLite's online backup API (a
  consistent snapshot while writers go on);
- PostgreSQL: ``store.pgdump``, ``pg_dump``'s custom format of the store's schema (the audit trail is
  in it), a consistent snapshot too.

Secrets kept in the database (the keys that sign paging cursors and access tokens: ``secret_info``)
are left out, their fingerprints recorded; a restored store makes new ones on first start (tokens and
paging links issued before stop working, as after any key rotation). The pseudonym key never is in
the database; its fingerprint is compared on restore, and a restore under another key is refused
unless forced: the store's pseudonyms would not match those of the data pushed after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import URL

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.store.database import Engines
from fhir_bridge.store.migration import state_of
from fhir_bridge.store.tables import CLOCK, INFO, RESOURCE, VERSION

FORMAT = "fhir-bridge-backup"
FORMAT_VERSION = 1
PSEUDONYM_KEY = "pseudonym_key"


class BackupError(ConfigurationError):
    """A backup or restore that cannot be made: the message says why and what to do."""


def _fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def _facts(connection: Connection, secret_info: Collection[str]) -> tuple[dict[str, str], dict[str, str], dict]:
    """The store's non-secret facts, its secrets' fingerprints, and what it holds (for the manifest)."""
    info = dict(connection.execute(select(INFO.c.key, INFO.c.value)).all())
    facts = {key: value for key, value in info.items() if key not in secret_info}
    secrets = {key: _fingerprint(value) for key, value in info.items() if key in secret_info}
    seq = connection.execute(select(CLOCK.c.seq).where(CLOCK.c.id == 1)).scalar_one_or_none()
    held = {
        "last_seq": seq or 0,
        "resources": connection.execute(select(func.count()).select_from(RESOURCE)).scalar_one(),
        "versions": connection.execute(select(func.count()).select_from(VERSION)).scalar_one(),
    }
    return facts, secrets, held


def _sqlite_file(engines: Engines) -> Path:
    return Path(engines.writer.url.database or "").expanduser()


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """An online, consistent copy of ``source`` (SQLite's backup API, in one step), as one file."""
    with sqlite3.connect(source) as reading, sqlite3.connect(target) as writing:
        reading.backup(writing)
    with sqlite3.connect(target, isolation_level=None) as copy:
        copy.execute("PRAGMA journal_mode=DELETE")  # one file in the archive, no -wal beside it
    copy.close()


def _forget_secrets(path: Path, secret_info: Collection[str]) -> None:
    """Removes the secret rows from a snapshot so that no page of the file keeps their bytes."""
    copy = sqlite3.connect(path, isolation_level=None)
    try:
        copy.execute("PRAGMA secure_delete=ON")
        copy.executemany("DELETE FROM store_info WHERE key = ?", [(key,) for key in secret_info])
        copy.execute("VACUUM")
    finally:
        copy.close()


# PostgreSQL -----------------------------------------------------------------------------------------


def _libpq_environment(url: URL) -> dict[str, str]:
    """The connection of ``url`` for pg_dump/pg_restore, in libpq's variables (no password on a command line)."""
    environment = dict(os.environ)
    options = url.query.get("options")
    values: dict[str, str | None] = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password if isinstance(url.password, str) else None,
        "PGDATABASE": url.database,
        "PGOPTIONS": options if isinstance(options, str) else None,
    }
    environment.update({name: value for name, value in values.items() if value})
    return environment


def _major(version: str) -> int:
    """15 of ``pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)``."""
    found = re.search(r"\)\s*(\d+)", version)
    return int(found.group(1)) if found else 0


def _postgres_client(engines: Engines, tool: str) -> str:
    """The path of ``tool`` (pg_dump, pg_restore), refused when older than the server (it could not
    read the server's catalogue, or would write a dump the server cannot load)."""
    path = shutil.which(tool)
    if path is None:
        raise BackupError(f"{tool} is not installed: install the PostgreSQL client (Debian: postgresql-client)")
    client = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    with engines.reader.connect() as connection:
        server = int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    if _major(client) < server:
        raise BackupError(f"{tool} is {client.strip()}, older than the server ({server}): install {tool} {server}")
    return path


def _run(arguments: list[str], url: URL) -> None:
    done = subprocess.run(arguments, env=_libpq_environment(url), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{Path(arguments[0]).name} failed: {lines[-1] if lines else done.returncode}")


def _current_schema(engines: Engines) -> str:
    with engines.reader.connect() as connection:
        return str(connection.execute(text("SELECT current_schema()")).scalar_one())


# backup ---------------------------------------------------------------------------------------------


def backup(
    engines: Engines,
    audit: Engines,
    path: Path,
    *,
    secret_info: Collection[str],
    fingerprints: dict[str, Any],
    software: str,
) -> dict[str, Any]:
    """Write a backup of the store (and its audit trail) to ``path`` while it runs; returns the manifest."""
    with engines.reader.connect() as connection:
        state = state_of(connection)
    if not state.populated:
        raise BackupError("the database holds no store: nothing to back up")
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-backup-", dir=path.parent) as work:
        folder = Path(work)
        if engines.dialect == "sqlite":
            members = _backup_sqlite(engines, audit, folder, secret_info)
            snapshot = _open_sqlite(folder / "store.sqlite")
        else:
            members = _backup_postgres(engines, folder, secret_info)
            snapshot = None
        connection = snapshot.connect() if snapshot else engines.reader.connect()
        try:
            facts, _, held = _facts(connection, secret_info)
        finally:
            connection.close()
            if snapshot:
                snapshot.dispose()
        with engines.reader.connect() as connection:
            _, secrets, _ = _facts(connection, secret_info)
        if engines.dialect == "postgresql":
            held = json.loads((folder / "held.json").read_text())
            (folder / "held.json").unlink()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "software": software,
            "dialect": engines.dialect,
            "schema": _current_schema(engines) if engines.dialect == "postgresql" else None,
            "revision": state.revision,
            **held,
            "keys": {**fingerprints, **secrets},
            "info": facts,
            "files": members,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w") as archive:
            for name in ["manifest.json", *members]:
                archive.add(folder / name, arcname=name)
        partial.replace(path)
    return manifest


def _open_sqlite(path: Path) -> Any:
    from sqlalchemy import create_engine

    return create_engine(f"sqlite:///{path}")


def _backup_sqlite(engines: Engines, audit: Engines, folder: Path, secret_info: Collection[str]) -> list[str]:
    _sqlite_snapshot(_sqlite_file(engines), folder / "store.sqlite")
    _forget_secrets(folder / "store.sqlite", secret_info)
    members = ["store.sqlite"]
    audit_file = _sqlite_file(audit)
    if audit is not engines and audit_file.exists():
        _sqlite_snapshot(audit_file, folder / "audit.sqlite")
        members.append("audit.sqlite")
    return members


def _backup_postgres(engines: Engines, folder: Path, secret_info: Collection[str]) -> list[str]:
    pg_dump = _postgres_client(engines, "pg_dump")
    schema = _current_schema(engines)
    # the snapshot pg_dump takes is the dump's; the counts are read in a snapshot of their own just
    # before, so they are a lower bound ("at least this much is in the file")
    with engines.reader.connect() as connection:
        _, _, held = _facts(connection, secret_info)
    (folder / "held.json").write_text(json.dumps(held))
    arguments = [
        pg_dump,
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--schema={schema}",
        f"--exclude-table-data={schema}.store_info",  # its rows go in the manifest, without the secrets
        f"--file={folder / 'store.pgdump'}",
    ]
    _run(arguments, engines.writer.url)
    return ["store.pgdump"]


# restore --------------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else None
    except (OSError, KeyError, tarfile.TarError, ValueError) as error:
        raise BackupError(f"{path} is no fhir-bridge backup: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is no fhir-bridge backup (no manifest)")
    return manifest


def restore(
    path: Path,
    engines: Engines,
    audit: Engines,
    *,
    fingerprints: dict[str, Any],
    force: bool = False,
) -> dict[str, Any]:
    """Restore the backup at ``path`` into ``engines``' empty database; returns its manifest."""
    manifest = read_manifest(path)
    if manifest["dialect"] != engines.dialect:
        raise BackupError(
            f"the backup is of a {manifest['dialect']} store and the database is {engines.dialect}: restore into "
            f"{manifest['dialect']}, then move it with `fhir-bridge db copy`"
        )
    was, now = manifest["keys"].get(PSEUDONYM_KEY), fingerprints.get(PSEUDONYM_KEY)
    if was != now and not force:
        raise BackupError(
            f"the backup was made under another pseudonym key ({was or 'none'}; configured: {now or 'none'}): "
            "configure the key it was made with (new pseudonyms would not match the stored ones), or --force"
        )
    with engines.reader.connect() as connection:
        if state_of(connection).populated:
            raise BackupError("the database already holds a store: restore into an empty database")
    with tempfile.TemporaryDirectory(prefix="fhir-bridge-restore-") as work:
        folder = Path(work)
        with tarfile.open(path) as archive:
            archive.extractall(folder, members=[archive.getmember(name) for name in manifest["files"]], filter="data")
        if engines.dialect == "sqlite":
            _restore_sqlite(folder, engines, audit)
        else:
            _restore_postgres(folder, engines, manifest)
    return manifest


def _restore_sqlite(folder: Path, engines: Engines, audit: Engines) -> None:
    engines.dispose()  # no pooled connection may hold the file while its pages are replaced
    for member, target in (("store.sqlite", engines), ("audit.sqlite", audit)):
        source = folder / member
        if not source.exists():
            continue
        with sqlite3.connect(source) as reading, sqlite3.connect(_sqlite_file(target)) as writing:
            reading.backup(writing)
        reading.close()
        writing.close()


def _restore_postgres(folder: Path, engines: Engines, manifest: dict[str, Any]) -> None:
    schema = _current_schema(engines)
    if schema != manifest["schema"]:
        raise BackupError(
            f"the backup is of schema {manifest['schema']!r} and the database's is {schema!r}: restore into a "
            f"database whose schema is {manifest['schema']!r} (options=-csearch_path={manifest['schema']})"
        )
    pg_restore = _postgres_client(engines, "pg_restore")
    dump = folder / "store.pgdump"
    listing = subprocess.run([pg_restore, "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    # the schema exists already (it is the database's current one): restore what is in it
    kept = [line for line in listing.splitlines() if " SCHEMA - " not in line]
    (folder / "toc").write_text("\n".join(kept) + "\n")
    url = engines.writer.url
    arguments = [
        pg_restore,
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        f"--use-list={folder / 'toc'}",
        f"--dbname={url.database}",
        str(dump),
    ]
    _run(arguments, url)
    with engines.writer.begin() as connection:
        for key, value in manifest["info"].items():
            connection.execute(INFO.insert().values(key=key, value=value))
