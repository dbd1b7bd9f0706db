"""``fhir-bridge keygen``: the site secret that keys every pseudonym; ``fhir-bridge keys rotate-signing``:
a new key for the built-in token endpoint's access tokens."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from fhir_bridge.cli.common import EXIT_FAILURES, add_database, record_admin, refuse, settings_from
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.services import Services


def keygen(arguments: argparse.Namespace) -> int:
    """Create a site secret file; an existing one is kept, because a new key would change every pseudonym."""
    path = Path(arguments.path)
    if path.exists():
        print(f"{path} exists: kept (a new key would change every pseudonym)", file=sys.stderr)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as key_file:
        key_file.write(secrets.token_hex(32) + "\n")
    print(f"{path}: new pseudonym key written (keep it secret and backed up)", file=sys.stderr)
    return 0


def rotate_signing(arguments: argparse.Namespace) -> int:
    """Add a new token signing key to the key file; the previous key keeps verifying the tokens it signed."""
    with Services.from_settings(settings_from(arguments)) as services:
        try:
            keys = services.token_keys
            new = keys.rotate()
        except ConfigurationError as error:
            record_admin(services, "keys rotate", "U", "refused", str(error))
            return refuse(error)
        if not record_admin(services, "keys rotate", "U", "success", f"new signing key {new.kid}"):
            return EXIT_FAILURES
    kept = ", ".join(key.kid for key in keys.keys[:-1]) or "none"
    print(f"{keys.path}: new signing key {new.kid}; still verifying: {kept}")
    print("running servers sign with the new key within seconds; rotate again only after the token lifetime")
    return 0


def register(commands: Any) -> None:
    key = commands.add_parser("keygen", help="create a pseudonym key file (an existing one is kept)")
    key.add_argument("path", help="where to write the key, e.g. pseudonym.key")
    key.set_defaults(handler=keygen)
    keys = commands.add_parser("keys", help="the built-in token endpoint's signing keys")
    actions = keys.add_subparsers(dest="action", required=True)
    rotate = actions.add_parser("rotate-signing", help="add a new token signing key (the previous one still verifies)")
    rotate.add_argument(
        "--token-key-file", type=Path, help="the key file (else FHIR_BRIDGE_TOKEN_KEY_FILE or the default)"
    )
    add_database(rotate)
    rotate.set_defaults(handler=rotate_signing)
