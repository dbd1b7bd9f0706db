"""The tables of the built-in token endpoint, declared through the store's schema API.

Only ``security.clients`` reads and writes them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Text

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

# Failed token requests per address and per client at an address, in fixed windows: the lockout of the
# token endpoint (security.lockout). In the database, so that every worker of it counts the same failures.
AUTH_FAILURE = table(
    "auth_failure",
    Column("key", String(400), primary_key=True),
    Column("window_start", BigInteger, nullable=False, index=True),  # seconds
    Column("failures", Integer, nullable=False),
)
