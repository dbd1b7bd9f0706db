"""The tables of the built-in token endpoint, declared through the store's schema API.

Only ``security.clients`` reads and writes them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Text

from fhir_bridge.store.schema import table

# A backend client of the built-in SMART token endpoint: its public keys and its largest scopes.
AUTH_CLIENT = table(
    "auth_client",
    Column("client_id", String(128), primary_key=True),
    Column("scope", Text, nullable=False),
    Column("jwks", Text, nullable=True),  # JSON Web Key Set
    Column("jwks_url", Text, nullable=True),
    Column("created", BigInteger, nullable=False),  # microseconds
)

# The ``jti`` of each client assertion used, until it expires: an assertion works once.
AUTH_ASSERTION = table(
    "auth_assertion",
    Column("client_id", String(128), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires", BigInteger, nullable=False, index=True),  # microseconds
)
