"""``fhir-bridge clients add|list|remove``: backend clients of the built-in SMART token endpoint."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_bridge.cli.common import EXIT_CONFIGURATION, EXIT_FAILURES, add_database, record_admin, services_from
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.security.clients import RegistrationError
from fhir_bridge.security.roles import ROLES, role_scopes
from fhir_bridge.services import Services

EXIT_REFUSED = EXIT_CONFIGURATION


def new_key_pair(private_key_path: Path, key_id: str) -> dict[str, Any]:
    """Write a new EC P-384 private key (PEM, mode 0600) and return its public JWKS (for ES384)."""
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(private_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": key_id, "alg": "ES384", "use": "sig"}]}


def add(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        return _add(arguments, services)


def _add(arguments: argparse.Namespace, services: Services) -> int:
    jwks = None
    if not arguments.role and not arguments.scope:
        print(f"fhir-bridge: give {arguments.client_id} a --role or --scope (or both)", file=sys.stderr)
        return EXIT_REFUSED
    try:
        scope = role_scopes(arguments.role or [], arguments.scope)
    except KeyError as error:
        print(f"fhir-bridge: {error.args[0]}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if arguments.new_key:
            jwks = new_key_pair(Path(arguments.new_key), f"{arguments.client_id}-1")
        elif arguments.jwks:
            jwks = json.loads(Path(arguments.jwks).read_text(encoding="utf-8"))
        client = services.clients.add(arguments.client_id, scope, jwks=jwks, jwks_url=arguments.jwks_url)
    except ConfigurationError:
        raise  # the settings or the database: said by main, like every command's
    except FileExistsError:
        print(f"fhir-bridge: {arguments.new_key} exists; choose another file for the new key", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, ValueError, RegistrationError) as error:
        print(f"fhir-bridge: cannot register {arguments.client_id}: {error}", file=sys.stderr)
        refused = f"refused to register client {arguments.client_id}: {type(error).__name__}"
        record_admin(services, "clients add", "C", "refused", refused)
        return EXIT_REFUSED
    keys = client.jwks_url or f"{len((client.jwks or {}).get('keys', []))} key(s)"
    recorded = f"registered client {client.client_id} with scopes {client.scope}, keys: {keys}"
    if not record_admin(services, "clients add", "C", "success", recorded):
        return EXIT_FAILURES
    print(f"registered {client.client_id} with scopes: {client.scope}")
    if arguments.new_key:
        print(f"its private key is in {arguments.new_key} (kid {arguments.client_id}-1, ES384): give it to the client")
    return 0


def list_clients(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        registered = services.clients.all()
    for client in registered:
        keys = client.jwks_url or f"{len((client.jwks or {}).get('keys', []))} key(s)"
        print(f"{client.client_id}\t{client.scope}\t{keys}")
    return 0


def remove(arguments: argparse.Namespace) -> int:
    with services_from(arguments) as services:
        removed = services.clients.remove(arguments.client_id)
        outcome, what = ("success", "removed") if removed else ("not-found", "found no")
        if not record_admin(services, "clients remove", "D", outcome, f"{what} client {arguments.client_id}"):
            return EXIT_FAILURES
    if not removed:
        print(f"fhir-bridge: no client {arguments.client_id!r}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"removed {arguments.client_id}: it gets no new tokens, and servers refuse those it has within seconds")
    return 0


def register(commands: Any) -> None:
    clients = commands.add_parser("clients", help="backend clients of the built-in SMART token endpoint")
    actions = clients.add_subparsers(dest="action", required=True)
    adding = actions.add_parser("add", help="register a client (again: replaces its keys and scopes)")
    adding.add_argument("client_id")
    adding.add_argument(
        "--role",
        action="append",
        choices=list(ROLES),
        help="a named bundle of scopes (repeatable): "
        + "; ".join(f"{role.name}: {role.job} ({role.scope})" for role in ROLES.values()),
    )
    adding.add_argument(
        "--scope", help='largest scopes it may get, e.g. "system/ImagingStudy.rs" (added to those of --role)'
    )
    keys = adding.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="file with the client's public JSON Web Key Set")
    keys.add_argument("--jwks-url", help="URL where the client publishes its JWKS")
    keys.add_argument("--new-key", help="make a new key pair: write the private key here, register the public one")
    add_database(adding)
    adding.set_defaults(handler=add)
    listing = actions.add_parser("list", help="the registered clients")
    add_database(listing)
    listing.set_defaults(handler=list_clients)
    removing = actions.add_parser("remove", help="unregister a client")
    removing.add_argument("client_id")
    add_database(removing)
    removing.set_defaults(handler=remove)
