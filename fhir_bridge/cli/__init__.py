"""The ``fhir-bridge`` command; each command group is a module of this package with a ``register``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fhir_bridge.cli import (
    audit,
    clients,
    clinical,
    db,
    dicom,
    dimse,
    export,
    keys,
    mllp,
    openapi,
    patient,
    search,
    serve,
)
from fhir_bridge.cli.openapi import openapi_document
from fhir_bridge.cli.search import explain_search

__all__ = ["explain_search", "main", "openapi_document", "parser"]


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fhir-bridge", description="Imaging-to-FHIR bridge")
    commands = main.add_subparsers(dest="command", required=True)
    for group in (serve, dimse, mllp, dicom, clinical, clients, keys, audit, search, openapi, export, db, patient):
        group.register(commands)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    return int(arguments.handler(arguments))
