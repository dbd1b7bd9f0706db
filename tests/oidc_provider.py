"""A small real OpenID Connect provider for the web UI's login: authorization code + PKCE, RS256 tokens.

It runs on loopback over HTTP (as the site's Keycloak or Entra ID would, minus TLS), publishes its
discovery document and JWKS, answers ``/authorize`` for the user the test has "logged in"
(``provider.user``, with that user's scopes) by redirecting to the client with a code, and
exchanges the code at ``/token`` only for the same client, redirect URI and PKCE verifier (S256).
The token's audience is the ``aud`` the client asked for (SMART App Launch), its ``scope`` the
user's scopes among those asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt

from fhir_bridge.security.scopes import Permission, grant_of, parse_scope
from tests.conftest import free_port
from tests.security_helpers import ClientKey, rsa_key

UI_CLIENT = "fhir-bridge-ui"


@dataclass
class User:
    name: str
    scopes: str  # what the site grants this person


@dataclass
class OpenIdProvider:
    client_id: str = UI_CLIENT
    redirect_uris: tuple[str, ...] = ()
    user: User = field(default_factory=lambda: User("steward", "user/*.rs user/AuditEvent.rs"))
    key: ClientKey = field(default_factory=lambda: ClientKey(rsa_key("oidc-1").private, "oidc-1", "RS256"))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # why token requests were refused, for assertions
    port: int = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/realms/hospital"

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        if query.get("client_id") != self.client_id or query.get("redirect_uri") not in self.redirect_uris:
            return 400, {}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 400, {}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**query, "user": self.user, "issued": time.time()}
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        return 302, {"Location": target}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = self.codes.pop(form.get("code", ""), None)
        problem = None
        if form.get("grant_type") != "authorization_code" or grant is None:
            problem = "unknown code"
        elif form.get("client_id") != grant["client_id"] or form.get("redirect_uri") != grant["redirect_uri"]:
            problem = "client or redirect_uri differs"
        else:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).decode().rstrip("=") != grant["code_challenge"]:
                problem = "PKCE verifier does not match"
        if problem:
            self.refused.append(problem)
            return 400, {"error": "invalid_grant", "error_description": problem}
        user: User = grant["user"]
        scope = " ".join(s for s in user.scopes.split() if _covered(s, grant.get("scope", "")))
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant["aud"],
            "sub": f"user-{user.name}",
            "preferred_username": user.name,
            "azp": self.client_id,
            "client_id": self.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + 300,
        }
        token = jwt.encode(claims, self.key.private, algorithm="RS256", headers={"kid": self.key.kid})
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": scope}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path.endswith("/.well-known/openid-configuration"):
                    self._json(
                        200,
                        {
                            "issuer": provider.issuer,
                            "authorization_endpoint": f"{provider.issuer}/protocol/openid-connect/auth",
                            "token_endpoint": f"{provider.issuer}/protocol/openid-connect/token",
                            "jwks_uri": f"{provider.issuer}/protocol/openid-connect/certs",
                            "code_challenge_methods_supported": ["S256"],
                        },
                    )
                elif url.path.endswith("/certs"):
                    self._json(200, provider.key.jwks())
                elif url.path.endswith("/auth"):
                    status, headers = provider.authorize(dict(parse_qsl(url.query)))
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if urlsplit(self.path).path.endswith("/token"):
                    self._json(*provider.token(form))
                else:
                    self.send_error(404)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler


def _covered(scope: str, asked: str) -> bool:
    """Whether the client asked for ``scope`` (by name, or by a wildcard such as ``user/*.rs``)."""
    if scope in asked.split():
        return True
    parsed = parse_scope(scope)
    return parsed is not None and all(grant_of(asked).allows(Permission(parsed[0], letter)) for letter in parsed[1])


@contextmanager
def running_provider(redirect_uris: tuple[str, ...] = ()) -> Iterator[OpenIdProvider]:
    provider = OpenIdProvider(redirect_uris=redirect_uris, port=free_port())
    server = ThreadingHTTPServer(("127.0.0.1", provider.port), provider.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
