"""The built-in SMART Backend Services token endpoint, for sites without an identity provider.

Clients are registered (``fhir-bridge clients add``) with their public keys and the largest
scopes they may get. A client asks for a token with the client-credentials grant and a JWT
assertion signed by its private key (RFC 7523, SMART Backend Services); the answer is a short-lived
access token signed by this server's own key, kept in a key file outside the database
(``security.signing``) that every worker of the database shares.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from fhir_bridge.security.lockout import Lockout
from fhir_bridge.security.scopes import narrow, unenforceable_scopes
from fhir_bridge.security.signing import TOKEN_ALGORITHM, SigningKeys
from fhir_bridge.security.tables import AUTH_ASSERTION, AUTH_CLIENT
from fhir_bridge.security.tokens import LEEWAY_S
from fhir_bridge.store.database import Engines, ensure_tables

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384", "RS256", "ES256", "RS512", "ES512", "PS384", "PS256"]
MAX_ASSERTION_LIFETIME_S = 300  # SMART: exp no more than five minutes in the future
JWKS_CACHE_S = 300  # a client's JWKS URL is fetched again after this, or at once for an unknown kid


class OAuthError(Exception):
    """An RFC 6749 error answer of the token endpoint: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class RegistrationError(ValueError):
    """A client registration that cannot work (no keys, private keys, unknown scopes)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    scope: str
    jwks: dict[str, Any] | None
    jwks_url: str | None


class ClientRegistry:
    """Registered backend clients, in the database."""

    def __init__(self, engines: Engines) -> None:
        ensure_tables(engines, [AUTH_CLIENT, AUTH_ASSERTION])
        self.engines = engines

    def add(self, client_id: str, scope: str, *, jwks: dict[str, Any] | None, jwks_url: str | None) -> Client:
        """Register (or re-register, replacing keys and scopes) a client."""
        client = Client(client_id, " ".join(scope.split()), jwks, jwks_url)
        _check_registration(client)
        row = {
            "client_id": client_id,
            "scope": client.scope,
            "jwks": json.dumps(jwks) if jwks else None,
            "jwks_url": jwks_url,
            "created": int(time.time() * 1_000_000),
        }
        with self.engines.writer.begin() as connection:
            connection.execute(delete(AUTH_CLIENT).where(AUTH_CLIENT.c.client_id == client_id))
            connection.execute(insert(AUTH_CLIENT).values(**row))
        return client

    def remove(self, client_id: str) -> bool:
        with self.engines.writer.begin() as connection:
            return connection.execute(delete(AUTH_CLIENT).where(AUTH_CLIENT.c.client_id == client_id)).rowcount > 0

    def get(self, client_id: str) -> Client | None:
        with self.engines.reader.connect() as connection:
            row = connection.execute(select(AUTH_CLIENT).where(AUTH_CLIENT.c.client_id == client_id)).first()
        return None if row is None else _client(row)

    def registered_at(self, client_id: str) -> float | None:
        """When the client was (last) registered, in seconds since the epoch; None if it is not."""
        with self.engines.reader.connect() as connection:
            created = connection.execute(
                select(AUTH_CLIENT.c.created).where(AUTH_CLIENT.c.client_id == client_id)
            ).scalar_one_or_none()
        return None if created is None else created / 1_000_000

    def all(self) -> list[Client]:
        with self.engines.reader.connect() as connection:
            rows = connection.execute(select(AUTH_CLIENT).order_by(AUTH_CLIENT.c.client_id)).all()
        return [_client(row) for row in rows]


def _client(row: Any) -> Client:
    return Client(row.client_id, row.scope, json.loads(row.jwks) if row.jwks else None, row.jwks_url)


def _check_registration(client: Client) -> None:
    if not client.client_id.strip() or len(client.client_id) > 128:
        raise RegistrationError("a client id is 1 to 128 characters")
    if (client.jwks is None) == (client.jwks_url is None):
        raise RegistrationError("register a client with its public keys: a JWKS file or a JWKS URL (one of them)")
    if client.jwks is not None:
        keys = client.jwks.get("keys") if isinstance(client.jwks, dict) else None
        if not isinstance(keys, list) or not keys:
            raise RegistrationError('the JWKS has no keys: it must be {"keys": [...]}')
        for key in keys:
            if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
                raise RegistrationError("every key must be an RSA or EC public key (kty RSA or EC)")
            if "d" in key:
                raise RegistrationError("the JWKS holds a private key: register the public key only")
            try:
                jwt.PyJWK(key)
            except jwt.PyJWTError as error:
                raise RegistrationError(f"a key of the JWKS is not usable: {error}") from None
    if not client.scope:
        raise RegistrationError("give the client at least one scope, e.g. system/ImagingStudy.rs")
    if bad := unenforceable_scopes(client.scope):
        raise RegistrationError(
            f"scopes this server cannot enforce: {', '.join(bad)} (use system/<Type|*>.<cruds>, e.g. system/*.rs)"
        )


class BuiltinIssuer:
    """Verifies client assertions and issues access tokens signed with the server's own key."""

    # An unknown kid refetches a client's JWKS URL at most this often: random kids cannot flood its server.
    jwks_refetch_cooldown_s = 30.0

    def __init__(self, engines: Engines, registry: ClientRegistry, lifetime_s: int, keys: SigningKeys) -> None:
        self.engines = engines
        self.registry = registry
        self.lifetime_s = lifetime_s
        self.keys = keys
        self.issuer = keys.issuer
        self.lockout = Lockout(engines)
        self._jwks_clients: dict[str, jwt.PyJWKClient] = {}  # of clients registered with a JWKS URL
        self._jwks_lock = threading.Lock()

    @property
    def jwks(self) -> dict[str, Any]:
        """The public keys of the signing key and of the previous one (tokens it signed are still valid)."""
        return self.keys.jwks()

    def issue(self, form: dict[str, str], token_urls: list[str], address: str = "unknown") -> dict[str, Any]:
        """Answer a token request (the form fields) from ``address``; ``token_urls`` are the audiences accepted.

        Repeated failures from an address, or for one client from an address, lock it out for a while
        (``security.lockout``): 429 with Retry-After, before the assertion is looked at."""
        claimed = _claimed_client(form.get("client_assertion") or "")
        wait = self.lockout.retry_after(address, claimed)
        if wait is not None:
            raise OAuthError(
                429,
                "invalid_request",
                f"too many failed token requests from this address; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        try:
            answer = self._issue(form, token_urls)
        except OAuthError as error:
            if error.error != "invalid_scope":  # an authenticated client asking too much is no guess
                self.lockout.failed(address, claimed)
            raise
        if claimed:
            self.lockout.succeeded(address, claimed)
        return answer

    def _issue(self, form: dict[str, str], token_urls: list[str]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        client, claims = self._verify_assertion(assertion, token_urls)
        requested = form.get("scope", "")
        if not requested.strip():
            raise OAuthError(400, "invalid_scope", "ask for scopes, e.g. scope=system/ImagingStudy.rs")
        granted = narrow(requested, client.scope)
        if not granted:
            raise OAuthError(
                400, "invalid_scope", f"none of the requested scopes is allowed to {client.client_id}: {requested}"
            )
        self._remember(client.client_id, str(claims["jti"]), float(claims["exp"]))
        now = int(time.time())
        signing = self.keys.signing()
        token = jwt.encode(
            {
                "iss": self.issuer,
                "sub": client.client_id,
                "client_id": client.client_id,
                "aud": self.issuer,
                "scope": granted,
                "iat": now,
                "exp": now + self.lifetime_s,
                "jti": uuid.uuid4().hex,
            },
            signing.private_key,
            algorithm=TOKEN_ALGORITHM,
            headers={"kid": signing.kid},
        )
        return {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime_s, "scope": granted}

    def _verify_assertion(self, assertion: str, token_urls: list[str]) -> tuple[Client, dict[str, Any]]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as error:
            raise OAuthError(400, "invalid_request", f"client_assertion is not a JWT: {error}") from None
        client_id = unverified.get("iss")
        client = self.registry.get(client_id) if isinstance(client_id, str) else None
        if client is None or unverified.get("sub") != client_id:
            raise OAuthError(401, "invalid_client", "the assertion's iss and sub must be a registered client id")
        key = self._client_key(client, assertion, header)
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=ASSERTION_ALGORITHMS,
                audience=token_urls,
                issuer=client_id,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as error:  # Type/ValueError: a key of another family
            raise OAuthError(401, "invalid_client", f"the client assertion is not valid: {error}") from None
        if float(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME_S + LEEWAY_S:
            raise OAuthError(401, "invalid_client", "the assertion's exp is more than five minutes away")
        return client, claims

    def _remember(self, client_id: str, jti: str, expires: float) -> None:
        """Record the assertion's jti so that it cannot be replayed before it expires."""
        now = int(time.time() * 1_000_000)
        try:
            with self.engines.writer.begin() as connection:
                connection.execute(delete(AUTH_ASSERTION).where(AUTH_ASSERTION.c.expires < now))
                connection.execute(
                    insert(AUTH_ASSERTION).values(
                        client_id=client_id, jti=jti[:256], expires=int((expires + LEEWAY_S) * 1_000_000)
                    )
                )
        except IntegrityError:
            raise OAuthError(401, "invalid_client", "this client assertion (its jti) was used already") from None

    def _client_key(self, client: Client, assertion: str, header: dict[str, Any]) -> Any:
        """The registered public key that signed the assertion (by ``kid``, else the only one).

        A client's JWKS URL is fetched once and cached (five minutes); a ``kid`` the cached set lacks
        fetches it again, so a client's key rotation just works without a fetch per assertion."""
        try:
            if client.jwks_url:
                return self._jwks_client(client.jwks_url).get_signing_key_from_jwt(assertion).key
            keys = jwt.PyJWKSet.from_dict(client.jwks or {}).keys
        except jwt.PyJWTError as error:
            raise OAuthError(401, "invalid_client", f"the client's keys cannot be used: {error}") from None
        kid = header.get("kid")
        matching = [k for k in keys if k.key_id == kid] if kid else keys
        if len(matching) != 1:
            raise OAuthError(401, "invalid_client", f"no single registered key of {client.client_id} has kid {kid!r}")
        return matching[0].key

    def _jwks_client(self, url: str) -> jwt.PyJWKClient:
        with self._jwks_lock:
            found = self._jwks_clients.get(url)
            if found is None:
                if len(self._jwks_clients) >= 1024:
                    self._jwks_clients.clear()
                found = jwt.PyJWKClient(
                    url,
                    cache_jwk_set=True,
                    lifespan=JWKS_CACHE_S,
                    timeout=5,
                    cooldown_duration=self.jwks_refetch_cooldown_s,
                )
                self._jwks_clients[url] = found
            return found


def _claimed_client(assertion: str) -> str | None:
    """The client id an assertion claims (unverified: only to count its failures), or None."""
    try:
        claimed = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return claimed[:128] if isinstance(claimed, str) and claimed else None
