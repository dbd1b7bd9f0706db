"""``fhir-bridge explain``: the SQL of a search and the database's plan for it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fhir_bridge.cli.common import EXIT_CONFIGURATION, add_database, settings_from
from fhir_bridge.errors import FhirError
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings


def explain_search(database_url: str, query: str) -> tuple[str, list[str]]:
    """The SQL of a search (``ImagingStudy?modality=CT``) and the database's plan for it, as of now."""
    from urllib.parse import parse_qsl

    from fhir_bridge.search.query import parse_search
    from fhir_bridge.search.runner import explain_plan

    resource_type, _, query_string = query.strip().lstrip("/").partition("?")
    with Services.from_settings(Settings(database_url=database_url)) as services:
        store = services.store
        search = parse_search(resource_type or None, parse_qsl(query_string, keep_blank_values=True), strict=True)
        search.at_seq = store.last_seq()
        return explain_plan(store, search)


def explain(arguments: argparse.Namespace) -> int:
    try:
        sql, plan = explain_search(settings_from(arguments).database_url, arguments.query)
    except FhirError as error:
        print(f"fhir-bridge: {error.diagnostics}", file=sys.stderr)
        return EXIT_CONFIGURATION
    print(sql)
    print("\nplan:")
    print("\n".join(f"  {line}" for line in plan))
    return 0


def register(commands: Any) -> None:
    plan = commands.add_parser("explain", help="print the SQL and the database's plan of a search")
    plan.add_argument("query", help="a search as in its URL below the FHIR base, e.g. 'ImagingStudy?modality=CT'")
    add_database(plan)
    plan.set_defaults(handler=explain)
