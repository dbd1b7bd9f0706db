"""The ``fhir-bridge`` command: ``serve`` the API, export the ``openapi`` document."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fhir_bridge.settings import Settings


def _settings(arguments: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(arguments, name)
        for name in ("database_url", "host", "port")
        if getattr(arguments, name, None) is not None
    }
    return Settings(**overrides)


def serve(arguments: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.app import create_app

    settings = _settings(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    logging.getLogger("fhir_bridge").info(
        "FHIR base URL http://%s:%s%s (database: %s)",
        settings.host,
        settings.port,
        settings.fhir_path,
        settings.database_url.split("@")[-1],
    )
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=settings.access_log, log_level="info")
    return 0


def openapi_document() -> dict:
    """The OpenAPI document of the app (built on a throw-away store)."""
    from fhir_bridge.api.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings(database_url=f"sqlite:///{scratch}/openapi.db"))
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
    run = commands.add_parser("serve", help="run the FHIR API (settings also from FHIR_BRIDGE_* variables)")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default 8080)")
    run.add_argument("--database-url", help="sqlite:///path.db (default ./fhir-bridge.db) or postgresql+psycopg://...")
    run.set_defaults(handler=serve)
    export = commands.add_parser("openapi", help="write the OpenAPI document")
    export.add_argument("--output", "-o", default="openapi/openapi.json", help="file to write, or - for stdout")
    export.set_defaults(handler=export_openapi)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    return arguments.handler(arguments)
