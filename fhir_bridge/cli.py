"""The ``fhir-bridge`` command: ``serve`` the API, ``ingest`` DICOM folders, ``keygen``, export ``openapi``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from fhir_bridge import cli_clients, cli_clinical
from fhir_bridge.settings import ConfigurationError, Settings

EXIT_FAILURES = 1  # something was not ingested
EXIT_CONFIGURATION = 2  # the command could not run at all


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(arguments, name)
        for name in ("database_url", "host", "port", "pseudonym_key_file", "auth", "dimse_port")
        if getattr(arguments, name, None) is not None
    }
    if "pseudonym_key_file" in overrides:
        overrides["pseudonym_key"] = None  # the flag wins over FHIR_BRIDGE_PSEUDONYM_KEY
    return Settings(**overrides)


def _refuse(error: ConfigurationError) -> int:
    print(f"fhir-bridge: cannot start: {error}", file=sys.stderr)
    return EXIT_CONFIGURATION


def serve(arguments: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.app import create_app

    settings = _settings(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except ConfigurationError as error:
        return _refuse(error)
    logging.getLogger("fhir_bridge").info(
        "FHIR base URL http://%s:%s%s, STOW-RS http://%s:%s%s/studies (database: %s)",
        settings.host,
        settings.port,
        settings.fhir_path,
        settings.host,
        settings.port,
        settings.dicomweb_path,
        settings.database_url.split("@")[-1],
    )
    listener = None
    if settings.dimse_port is not None:  # the DICOM listener shares the app's ingest, store and audit trail
        from fhir_bridge.listeners.dimse import DimseListener

        try:
            listener = DimseListener.from_settings(settings, app.state.dicom_ingest, app.state.audit_log.record)
        except ConfigurationError as error:
            return _refuse(error)
        listener.start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, access_log=settings.access_log, log_level="info")
    finally:
        if listener is not None:
            listener.stop()
    return 0


def dimse(arguments: argparse.Namespace) -> int:
    """Run the DICOM listener alone (C-STORE, C-ECHO) until SIGINT or SIGTERM, on the same database."""
    from fhir_bridge.api.app import create_app
    from fhir_bridge.listeners.dimse import DimseListener

    settings = _settings(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
        listener = DimseListener.from_settings(settings, app.state.dicom_ingest, app.state.audit_log.record)
    except ConfigurationError as error:
        return _refuse(error)
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    listener.start()
    try:
        stopping.wait()
    finally:
        listener.stop()
        app.state.engines.dispose()
    return 0


def ingest(arguments: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fhir_bridge.api.app import create_app
    from fhir_bridge.ingest.files import ingest_files

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(_settings(arguments))
    except ConfigurationError as error:
        return _refuse(error)
    started = time.perf_counter()
    bar = tqdm(unit="file", file=sys.stderr, disable=True if arguments.no_progress else None, desc="ingest")
    try:
        summary = ingest_files(
            app.state.dicom_ingest,
            arguments.paths,
            workers=arguments.workers,
            batch_size=arguments.batch_size,
            progress=bar.update,
            on_total=lambda total: bar.reset(total=total),
        )
    finally:
        bar.close()
        app.state.engines.dispose()
    elapsed = time.perf_counter() - started
    rate = summary.instances / elapsed if elapsed > 0 else 0.0
    print(
        f"ingested {summary.instances} instances of {len(summary.studies)} studies and {len(summary.series)} "
        f"series in {elapsed:.1f} s ({rate:.0f} instances/s)"
    )
    for title, rows in (("failed", summary.failed), ("stored with a warning", summary.warnings)):
        if rows:
            print(f"{title}: {len(rows)} files")
            for path, reason in rows:
                print(f"  {path}: {reason}")
    if summary.skipped:
        reasons = Counter(reason for _, reason in summary.skipped)
        listed = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        print(f"skipped: {len(summary.skipped)} files that are not instances ({listed})")
    return EXIT_FAILURES if summary.failed else 0


def explain_search(database_url: str, query: str) -> tuple[str, list[str]]:
    """The SQL of a search (``ImagingStudy?modality=CT``) and the database's plan for it, as of now."""
    from urllib.parse import parse_qsl

    from fhir_bridge.search.query import parse_search
    from fhir_bridge.store.database import create_engines
    from fhir_bridge.store.store import Store

    resource_type, _, query_string = query.strip().lstrip("/").partition("?")
    engines = create_engines(database_url)
    try:
        store = Store(engines)
        search = parse_search(resource_type or None, parse_qsl(query_string, keep_blank_values=True), strict=True)
        search.at_seq = store.last_seq()
        return store.explain(search)
    finally:
        engines.dispose()


def explain(arguments: argparse.Namespace) -> int:
    from fhir_bridge.errors import FhirError

    try:
        sql, plan = explain_search(_settings(arguments).database_url, arguments.query)
    except FhirError as error:
        print(f"fhir-bridge: {error.diagnostics}", file=sys.stderr)
        return EXIT_CONFIGURATION
    print(sql)
    print("\nplan:")
    print("\n".join(f"  {line}" for line in plan))
    return 0


def keygen(arguments: argparse.Namespace) -> int:
    """Create a site secret file; an existing one is kept, because a new key would change every pseudonym."""
    path = Path(arguments.path)
    if path.exists():
        print(f"{path} exists: kept (a new key would change every pseudonym)", file=sys.stderr)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as key_file:
        key_file.write(secrets.token_hex(32) + "\n")
    print(f"{path}: new pseudonym key written (keep it secret and backed up)", file=sys.stderr)
    return 0


def openapi_document() -> dict:
    """The OpenAPI document of the app (built on a throw-away store, with a throw-away key)."""
    from fhir_bridge.api.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(database_url=f"sqlite:///{scratch}/openapi.db", pseudonym_key=secrets.token_hex(32))
        app = create_app(settings)
        document = app.openapi()
        app.state.engines.dispose()
    return document


def export_openapi(arguments: argparse.Namespace) -> int:
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if arguments.output == "-":
        sys.stdout.write(text)
    else:
        Path(arguments.output).write_text(text, encoding="utf-8")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fhir-bridge", description="Imaging-to-FHIR bridge")
    commands = main.add_subparsers(dest="command", required=True)
    database = "sqlite:///path.db (default ./fhir-bridge.db) or postgresql+psycopg://..."
    key_file = "file holding the pseudonym key (else FHIR_BRIDGE_PSEUDONYM_KEY[_FILE])"
    run = commands.add_parser("serve", help="run the FHIR API and STOW-RS (settings also from FHIR_BRIDGE_* variables)")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default 8080)")
    run.add_argument("--database-url", help=database)
    run.add_argument("--pseudonym-key-file", type=Path, help=key_file)
    run.add_argument(
        "--auth", choices=["smart", "none"], help="smart (default): bearer tokens required; none: no access control"
    )
    run.set_defaults(handler=serve)
    scp = commands.add_parser(
        "dimse", help="run the DICOM listener alone: C-STORE and C-ECHO (FHIR_BRIDGE_DIMSE_* settings)"
    )
    scp.add_argument("--port", dest="dimse_port", type=int, help="DICOM port (else FHIR_BRIDGE_DIMSE_PORT)")
    scp.add_argument("--database-url", help=database)
    scp.add_argument("--pseudonym-key-file", type=Path, help=key_file)
    scp.set_defaults(handler=dimse)
    load = commands.add_parser("ingest", help="ingest DICOM files and folders (exit 1 when any file failed)")
    load.add_argument("paths", nargs="+", help="files or folders (walked recursively; no DICOMDIR needed)")
    load.add_argument("--database-url", help=database)
    load.add_argument("--pseudonym-key-file", type=Path, help=key_file)
    load.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="header-reading processes")
    load.add_argument("--batch-size", type=int, default=500, help="instances per transaction (and Provenance)")
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(handler=ingest)
    plan = commands.add_parser("explain", help="print the SQL and the database's plan of a search")
    plan.add_argument("query", help="a search as in its URL below the FHIR base, e.g. 'ImagingStudy?modality=CT'")
    plan.add_argument("--database-url", help=database)
    plan.set_defaults(handler=explain)
    key = commands.add_parser("keygen", help="create a pseudonym key file (an existing one is kept)")
    key.add_argument("path", help="where to write the key, e.g. pseudonym.key")
    key.set_defaults(handler=keygen)
    export = commands.add_parser("openapi", help="write the OpenAPI document")
    export.add_argument("--output", "-o", default="openapi/openapi.json", help="file to write, or - for stdout")
    export.set_defaults(handler=export_openapi)
    cli_clinical.register(commands, _settings, database, key_file)  # ingest-clinical, mappings check|list
    cli_clients.register(commands, _settings, database)  # clients add|list|remove
    return main


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    return arguments.handler(arguments)
