"""``fhir-bridge mllp``: the HL7 v2 MLLP listener alone, on the same services and database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from fhir_bridge.cli.common import add_database, add_key_file, run_listener
from fhir_bridge.services import Services
from fhir_bridge.settings import ConfigurationError

if TYPE_CHECKING:
    from fhir_bridge.listeners.mllp import MllpListener


def mllp(arguments: argparse.Namespace) -> int:
    """Run the listener until SIGINT or SIGTERM."""
    from fhir_bridge.listeners.mllp import MllpListener

    def build(services: Services) -> MllpListener:
        if services.settings.mllp_port is None:
            raise ConfigurationError("no MLLP port: set FHIR_BRIDGE_MLLP_PORT or --port")
        return MllpListener.from_settings(
            services.settings, services.clinical_ingest, services.mappings, services.audit_log.record
        )

    return run_listener(arguments, build)


def register(commands: Any) -> None:
    listener = commands.add_parser(
        "mllp", help="run the HL7 v2 MLLP listener alone (FHIR_BRIDGE_MLLP_* settings; docs/hl7-mllp.md)"
    )
    listener.add_argument("--port", dest="mllp_port", type=int, help="MLLP port (else FHIR_BRIDGE_MLLP_PORT)")
    add_database(listener)
    add_key_file(listener)
    listener.set_defaults(handler=mllp)
