"""The ``fhir-bridge`` command; each command group is a module of this package with a ``register``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fhir_bridge.cli import (
    audit,
    clients,
    clinical,
    config,
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
from fhir_bridge.cli.common import add_config, refuse
from fhir_bridge.cli.openapi import openapi_document
from fhir_bridge.cli.search import explain_search
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.version import package_version

__all__ = ["explain_search", "main", "openapi_document", "parser"]


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fhir-bridge", description="Imaging-to-FHIR bridge")
    main.add_argument("--version", action="version", version=f"fhir-bridge {package_version()}")
    add_config(main, default=None)
    commands = main.add_subparsers(dest="command", required=True)
    for group in (
        serve,
        dimse,
        mllp,
        dicom,
        clinical,
        clients,
        keys,
        audit,
        search,
        openapi,
        export,
        db,
        patient,
        config,
    ):
        group.register(commands)
    for command in _leaves(main):  # `fhir-bridge --config F cmd` and `fhir-bridge cmd --config F` alike
        if command is not main:
            add_config(command)
    return main


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _leaves(sub)
            return found
    return [parser]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        return int(arguments.handler(arguments))
    except ConfigurationError as error:  # a setting, a config file or the database: a line or two, no traceback
        return refuse(error)
