"""Bearer-token verification: tokens of the built-in issuer and of the site's own OAuth server.

A token is accepted when its signature verifies against the issuer's published keys (JWKS), it
has not expired, and its issuer and audience are the configured ones. The external issuer's
keys are fetched lazily (the service starts even while the identity provider is down) and
cached; a key id the cache does not know triggers one refetch, so key rotation just works.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from fhir_bridge.security.scopes import Grant, grant_of

ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
LEEWAY_S = 30  # clock skew tolerated between this server and the issuer
_CACHE_SIZE = 4096


class TokenRejected(Exception):
    """The token is missing, malformed, expired, or not from a trusted issuer (401)."""


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched now (503): not the client's fault."""


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    client_id: str
    grant: Grant
    issuer: str
    expires: float  # seconds since the epoch
    issued: float = 0.0  # iat, seconds since the epoch (0: the token does not say)

    @property
    def owner(self) -> str:
        """Who owns what this client leaves behind (export jobs): its issuer and client id together, so a
        client of one issuer never gets at those of another issuer's client of the same id."""
        return hashlib.sha256(f"{self.issuer}\n{self.client_id}".encode()).hexdigest()


class ExternalIssuer:
    """An OpenID Connect / OAuth 2.0 server of the site: its issuer id, JWKS and expected audience."""

    # An unknown key id refetches the JWKS at most this often: random kids cannot flood the issuer.
    refetch_cooldown_s = 30.0

    def __init__(self, issuer: str, audience: str | None, jwks_url: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks_url = jwks_url
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def key_for(self, token: str) -> Any:
        try:
            return self._client().get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            raise IssuerUnavailable(f"cannot fetch the keys of {self.issuer}: {error}") from None
        except jwt.PyJWKClientError as error:
            raise TokenRejected(f"no key of {self.issuer} verifies this token: {error}") from None

    def _client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    self._discover(),
                    cache_keys=True,
                    lifespan=300,
                    timeout=5,
                    cooldown_duration=self.refetch_cooldown_s,
                )
            return self._keys

    def _discover(self) -> str:
        """The JWKS URL: configured, or the ``jwks_uri`` of the issuer's OpenID configuration."""
        if self._jwks_url:
            return self._jwks_url
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            answer = httpx.get(url, timeout=5, follow_redirects=True)
            answer.raise_for_status()
            self._jwks_url = str(answer.json()["jwks_uri"])
        except (httpx.HTTPError, ValueError, KeyError) as error:
            raise IssuerUnavailable(f"cannot read the OpenID configuration at {url}: {error}") from None
        return self._jwks_url


class TokenVerifier:
    """Turns an ``Authorization: Bearer`` token into a Principal, or says why it cannot.

    ``builtin_key`` gives the public key of a built-in token's ``kid`` (None: not one of ours).
    ``registered`` gives when a built-in client was registered (None: it is not): a token of a client
    removed since, or re-registered after the token was issued (new keys, other scopes), is refused.
    The answer is cached for ``registration_cache_s`` seconds, so a removal takes effect that quickly.
    """

    registration_cache_s = 5.0

    def __init__(
        self,
        builtin_issuer: str,
        builtin_key: Callable[[str | None], Any],
        external: ExternalIssuer | None,
        registered: Callable[[str], float | None] | None = None,
    ) -> None:
        self.builtin_issuer = builtin_issuer
        self._builtin_key = builtin_key
        self.external = external
        self._registered = registered
        # token digest -> (principal, key id), until the token expires; a built-in key retired since is checked
        self._verified: dict[str, tuple[Principal, str | None]] = {}
        self._registrations: dict[str, tuple[float, float | None]] = {}  # client -> (looked at, registered)
        self._lock = threading.Lock()

    def verify(self, token: str, default_audience: str) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._verified.get(digest)
        if cached is not None and cached[0].expires > time.time():
            principal, kid = cached
            if principal.issuer == self.builtin_issuer and self._builtin_key(kid) is None:
                self._verified.pop(digest, None)
                raise TokenRejected("the bearer token is signed by a key this server no longer uses")
        else:
            principal, kid = self._verify(token, default_audience)
            with self._lock:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.clear()
                self._verified[digest] = (principal, kid)
        if principal.issuer == self.builtin_issuer:
            self._check_registration(principal)
        return principal

    def _check_registration(self, principal: Principal) -> None:
        if self._registered is None:
            return
        now = time.monotonic()
        looked, registered = self._registrations.get(principal.client_id, (-1e18, None))
        if now - looked >= self.registration_cache_s:
            registered = self._registered(principal.client_id)
            with self._lock:
                if len(self._registrations) >= _CACHE_SIZE:
                    self._registrations.clear()
                self._registrations[principal.client_id] = (now, registered)
        if registered is None:
            raise TokenRejected(f"{principal.client_id} is no longer a registered client: its tokens are revoked")
        if principal.issued < int(registered):  # iat has whole seconds: a token of the same second stays valid
            raise TokenRejected(f"{principal.client_id} was registered again after this token was issued")

    def _verify(self, token: str, default_audience: str) -> tuple[Principal, str | None]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise TokenRejected(f"the bearer token is not a JWT: {error}") from None
        if issuer == self.builtin_issuer:
            key, audience = self._builtin_key(kid), self.builtin_issuer
            if key is None:
                raise TokenRejected("the bearer token is signed by a key this server does not (or no longer) use")
        elif self.external is not None and issuer == self.external.issuer:
            key, audience = self.external.key_for(token), self.external.audience or default_audience
        else:
            raise TokenRejected(f"tokens of issuer {issuer!r} are not trusted here")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ASYMMETRIC_ALGORITHMS,
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as error:  # Type/ValueError: a key of another family
            raise TokenRejected(f"the bearer token is not valid: {error}") from None
        issued = claims.get("iat")
        principal = Principal(
            _client_id(claims),
            grant_of(_scope_text(claims)),
            issuer,
            float(claims["exp"]),
            float(issued) if isinstance(issued, int | float) else 0.0,
        )
        return principal, kid


def _client_id(claims: dict[str, Any]) -> str:
    """RFC 9068 ``client_id``, else ``azp`` (OpenID Connect), else the subject."""
    for name in ("client_id", "azp", "sub"):
        if isinstance(claims.get(name), str) and claims[name]:
            return claims[name]
    raise TokenRejected("the bearer token names no client (client_id, azp or sub)")


def _scope_text(claims: dict[str, Any]) -> str:
    """``scope`` (space-separated, RFC 8693/9068) or ``scp`` (a list, as some identity providers send)."""
    scope = claims.get("scope", claims.get("scp", ""))
    return " ".join(scope) if isinstance(scope, list) else str(scope)
