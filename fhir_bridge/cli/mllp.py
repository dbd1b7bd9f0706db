"""``fhir-bridge mllp``: the HL7 v2 MLLP listener alone, on the same services and database."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from fhir_bridge.cli.common import add_database, add_key_file, refuse, run_until_stopped, services_from
from fhir_bridge.settings import ConfigurationError


def mllp(arguments: argparse.Namespace) -> int:
    """Run the listener until SIGINT or SIGTERM."""
    from fhir_bridge.listeners.mllp import MllpListener

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with services_from(arguments) as services:
        if services.settings.mllp_port is None:
            return refuse(ConfigurationError("no MLLP port: set FHIR_BRIDGE_MLLP_PORT or --port"))
        try:
            listener = MllpListener.from_settings(
                services.settings, services.clinical_ingest, services.mappings, services.audit_log.record
            )
            listener.start()
        except ConfigurationError as error:
            return refuse(error)
        run_until_stopped(listener)
    return 0


def register(commands: Any) -> None:
    listener = commands.add_parser(
        "mllp", help="run the HL7 v2 MLLP listener alone (FHIR_BRIDGE_MLLP_* settings; docs/hl7-mllp.md)"
    )
    listener.add_argument("--port", dest="mllp_port", type=int, help="MLLP port (else FHIR_BRIDGE_MLLP_PORT)")
    add_database(listener)
    add_key_file(listener)
    listener.set_defaults(handler=mllp)
