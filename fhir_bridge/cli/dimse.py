"""``fhir-bridge dimse``: the DICOM listener alone (C-STORE, C-ECHO), on the same services and database."""

from __future__ import annotations

import argparse
from typing import Any

from fhir_bridge.cli.common import add_database, add_key_file, run_listener


def dimse(arguments: argparse.Namespace) -> int:
    """Run the listener until SIGINT or SIGTERM."""
    from fhir_bridge.listeners.dimse import DimseListener

    return run_listener(
        arguments,
        lambda services: DimseListener.from_settings(
            services.settings, services.dicom_ingest, services.audit_log.record
        ),
    )


def register(commands: Any) -> None:
    scp = commands.add_parser(
        "dimse", help="run the DICOM listener alone: C-STORE and C-ECHO (FHIR_BRIDGE_DIMSE_* settings)"
    )
    scp.add_argument("--port", dest="dimse_port", type=int, help="DICOM port (else FHIR_BRIDGE_DIMSE_PORT)")
    add_database(scp)
    add_key_file(scp)
    scp.set_defaults(handler=dimse)
