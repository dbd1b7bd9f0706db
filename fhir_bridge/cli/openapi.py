"""``fhir-bridge openapi``: the OpenAPI document of the HTTP API (openapi/openapi.json is kept by a test)."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from fhir_bridge.services import Services
from fhir_bridge.settings import Settings


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the app (built on a throw-away store, with a throw-away key)."""
    from fhir_bridge.api.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(database_url=f"sqlite:///{scratch}/openapi.db", pseudonym_key=secrets.token_hex(32))
        with Services.from_settings(settings) as services:
            return create_app(services=services).openapi()


def export_openapi(arguments: argparse.Namespace) -> int:
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if arguments.output == "-":
        sys.stdout.write(text)
    else:
        Path(arguments.output).write_text(text, encoding="utf-8")
    return 0


def register(commands: Any) -> None:
    export = commands.add_parser("openapi", help="write the OpenAPI document")
    export.add_argument("--output", "-o", default="openapi/openapi.json", help="file to write, or - for stdout")
    export.set_defaults(handler=export_openapi)
