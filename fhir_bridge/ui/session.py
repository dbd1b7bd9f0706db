"""The UI's browser session and its login: the SMART App Launch standalone flow against the site's
OpenID Connect server (authorization code with PKCE, RFC 7636).

The session is a signed cookie holding the user's access token (HMAC-SHA256 with a secret kept in
the database, so every worker reads every session). The token is verified again on each request by
the same verifier as bearer tokens: a signature only stops a browser from forging the cookie's
other fields (the login's state and PKCE verifier).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

SESSION_COOKIE = "fhir_bridge_ui"
LOGIN_COOKIE = "fhir_bridge_ui_login"
LOGIN_SECONDS = 600  # a login not finished within ten minutes starts again


class LoginFailed(Exception):
    """The OpenID Connect server, or the browser's answer from it, did not give a token."""


class CookieSigner:
    """JSON values in cookies, signed and with an expiry; anything tampered with reads as absent."""

    def __init__(self, secret: str, purpose: str) -> None:
        self._key = hashlib.sha256(f"{purpose}:{secret}".encode()).digest()

    def dumps(self, value: dict[str, Any], expires: float) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps({"v": value, "exp": int(expires)})).decode().rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def loads(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < time.time():
            return None
        value = data.get("v")
        return value if isinstance(value, dict) else None

    def _mac(self, payload: str) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload.encode(), "sha256")).decode().rstrip("=")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str


class OpenIdProvider:
    """The site's OpenID Connect server as the UI's login uses it (endpoints discovered once, then kept)."""

    def __init__(self, issuer: str, client_id: str, scopes: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.scopes = scopes
        self._endpoints: Endpoints | None = None
        self._lock = threading.Lock()

    def endpoints(self) -> Endpoints:
        with self._lock:
            if self._endpoints is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    answer = httpx.get(url, timeout=5, follow_redirects=True)
                    answer.raise_for_status()
                    document = answer.json()
                    self._endpoints = Endpoints(
                        str(document["authorization_endpoint"]), str(document["token_endpoint"])
                    )
                except (httpx.HTTPError, ValueError, KeyError) as error:
                    raise LoginFailed(f"cannot read the OpenID configuration at {url}: {error}") from None
            return self._endpoints

    def authorization_url(self, redirect_uri: str, state: str, challenge: str, audience: str) -> str:
        """Where the browser goes to log in (SMART standalone launch: ``aud`` is the FHIR base URL)."""
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scopes,
            "state": state,
            "aud": audience,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        authorization = self.endpoints().authorization
        return f"{authorization}{'&' if '?' in authorization else '?'}{urlencode(query)}"

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token response for an authorization code (a public client: PKCE, no client secret)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        try:
            answer = httpx.post(self.endpoints().token, data=form, timeout=10)
        except httpx.HTTPError as error:
            raise LoginFailed(f"the token endpoint of {self.issuer} cannot be reached: {error}") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            reason = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            raise LoginFailed(f"the token endpoint of {self.issuer} refused the code: {reason or answer.status_code}")
        return body
