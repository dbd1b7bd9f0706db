"""``fhir-bridge config show``: the effective settings, where each comes from, secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fhir_bridge.cli.common import settings_from


def show(arguments: argparse.Namespace) -> int:
    settings = settings_from(arguments)
    effective = settings.effective()
    if arguments.json:
        print(json.dumps({name: {"value": v, "source": settings.source_of(name)} for name, v in effective.items()}))
        return 0
    print(f"# config file: {settings.config_file or 'none'}")
    for name, value in effective.items():
        source = settings.source_of(name)
        if value is None:
            print(f"# {name} is unset  ({source})")
        else:  # JSON scalars and lists are TOML too: the output can start a config file
            print(f"{name} = {json.dumps(value, ensure_ascii=False)}  # {source}")
    return 0


def register(commands: Any) -> None:
    config = commands.add_parser("config", help="the configuration: settings from the config file, environment, flags")
    actions = config.add_subparsers(dest="action", required=True)
    showing = actions.add_parser(
        "show", help="print every effective setting and its source (default, file, environment), secrets masked"
    )
    showing.add_argument("--json", action="store_true", help="as JSON: {name: {value, source}}")
    showing.set_defaults(handler=show)
