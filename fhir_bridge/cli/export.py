"""``fhir-bridge export eucaim-cdm``: the store as the EUCAIM common data model (Tier 3), incrementally."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fhir_bridge.cli.common import EXIT_CONFIGURATION, add_database, add_key_file, services_from
from fhir_bridge.settings import ConfigurationError


def export_eucaim_cdm(arguments: argparse.Namespace) -> int:
    from fhir_bridge.eucaim.cdm import ExportError, export_cdm, summary
    from fhir_bridge.eucaim.federated import Dataset

    try:
        with services_from(arguments) as services:
            if services.pseudonymiser is None:
                raise ConfigurationError(
                    "the EUCAIM CDM export needs the site secret (FHIR_BRIDGE_PSEUDONYM_KEY[_FILE]) for its "
                    "pseudonymous ids"
                )
            report = export_cdm(
                services.store,
                arguments.to,
                Dataset.of(services.catalogue_config),
                services.pseudonymiser,
                remap_uids=services.settings.remap_uids,
                schema=arguments.schema,
                full=arguments.full,
                focus_compat=arguments.focus_compat,
            )
    except (ConfigurationError, ExportError) as error:
        print(f"fhir-bridge: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    print(summary(report))
    return 0


def register(commands: Any) -> None:
    exports = commands.add_parser("export", help="export the store to another model").add_subparsers(
        dest="target", required=True
    )
    cdm = exports.add_parser("eucaim-cdm", help="fill the EUCAIM common data model (incremental; --full rewrites it)")
    cdm.add_argument("--to", required=True, help="the CDM's database, postgresql+psycopg://user@host/db")
    cdm.add_argument("--schema", default="eucaim_cdm_output", help="the CDM's schema (default eucaim_cdm_output)")
    cdm.add_argument("--full", action="store_true", help="rewrite the whole dataset rather than what changed")
    cdm.add_argument(
        "--focus-compat", action="store_true", help="add series_body_site_code, the column Focus's SQL reads"
    )
    add_database(cdm)
    add_key_file(cdm)
    cdm.set_defaults(handler=export_eucaim_cdm)
