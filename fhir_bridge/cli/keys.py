"""``fhir-bridge keygen``: the site secret that keys every pseudonym."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any


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


def register(commands: Any) -> None:
    key = commands.add_parser("keygen", help="create a pseudonym key file (an existing one is kept)")
    key.add_argument("path", help="where to write the key, e.g. pseudonym.key")
    key.set_defaults(handler=keygen)
