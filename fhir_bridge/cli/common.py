"""What every command shares: settings from flags over environment, the services, exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fhir_bridge.errors import ConfigurationError
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings

EXIT_FAILURES = 1  # something was not ingested or checked
EXIT_CONFIGURATION = 2  # the command could not run at all

DATABASE_HELP = "sqlite:///path.db (default ./fhir-bridge.db) or postgresql+psycopg://..."
KEY_FILE_HELP = "file holding the pseudonym key (else FHIR_BRIDGE_PSEUDONYM_KEY[_FILE])"
_FLAGS = ("database_url", "host", "port", "pseudonym_key_file", "auth", "mappings_dir", "dimse_port")


def settings_from(arguments: argparse.Namespace) -> Settings:
    """``FHIR_BRIDGE_*`` settings with the command's flags over them."""
    overrides: dict[str, Any] = {
        name: getattr(arguments, name) for name in _FLAGS if getattr(arguments, name, None) is not None
    }
    if "pseudonym_key_file" in overrides:
        overrides["pseudonym_key"] = None  # the flag wins over FHIR_BRIDGE_PSEUDONYM_KEY
    return Settings(**overrides)


def settings_environment(arguments: argparse.Namespace) -> dict[str, str | None]:
    """The command's flags as ``FHIR_BRIDGE_*`` variables (None: unset it), for processes it starts
    that read their settings from the environment (``serve --workers``)."""
    found: dict[str, str | None] = {
        f"FHIR_BRIDGE_{name.upper()}": str(getattr(arguments, name))
        for name in _FLAGS
        if getattr(arguments, name, None) is not None
    }
    if "FHIR_BRIDGE_PSEUDONYM_KEY_FILE" in found:
        found["FHIR_BRIDGE_PSEUDONYM_KEY"] = None  # the flag wins over FHIR_BRIDGE_PSEUDONYM_KEY
    return found


def services_from(arguments: argparse.Namespace) -> Services:
    return Services.from_settings(settings_from(arguments))


def refuse(error: ConfigurationError) -> int:
    print(f"fhir-bridge: cannot start: {error}", file=sys.stderr)
    return EXIT_CONFIGURATION


def add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help=DATABASE_HELP)


def add_key_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pseudonym-key-file", type=Path, help=KEY_FILE_HELP)
