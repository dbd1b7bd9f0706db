"""The UI's routes: pages, the login of the SMART standalone launch, the style sheet.

With access control off (``FHIR_BRIDGE_AUTH=none``, loopback trials) every page just works. With it
on, a page without a valid session sends the browser to ``/ui/login``, which sends it to the site's
OpenID Connect server; ``/ui/callback`` takes the code back, exchanges it (PKCE) and keeps the
user's token in the session cookie. Every page's data is then read as that user's search.

The access-control middleware lets ``/ui`` through (it knows bearer tokens, not sessions): the
``viewer`` dependency below authenticates every page, and the viewer audits every read.
"""

from __future__ import annotations

import secrets
import time
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from fhir_bridge.errors import FhirError
from fhir_bridge.security.tokens import IssuerUnavailable, TokenRejected
from fhir_bridge.services import Services
from fhir_bridge.ui import pages
from fhir_bridge.ui.session import (
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    SESSION_COOKIE,
    CookieSigner,
    LoginFailed,
    OpenIdProvider,
    pkce_pair,
)
from fhir_bridge.ui.viewer import Forbidden, Viewer

PREFIX = "/ui"
MAX_COOKIE = 3900  # browsers keep cookies up to 4096 bytes
STATIC = {"ui.css": "text/css; charset=utf-8"}
templates = Jinja2Templates(directory=str(Path(str(files("fhir_bridge.ui").joinpath("templates")))))
templates.env.tests["forbidden"] = lambda value: isinstance(value, Forbidden)  # a part the viewer may not see
router = APIRouter(prefix=PREFIX, include_in_schema=False)


class LoginNeeded(Exception):
    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason


def _services(request: Request) -> Services:
    return request.app.state.services


def fhir_base(request: Request) -> str:
    settings = _services(request).settings
    return (settings.public_base_url or str(request.base_url).rstrip("/") + settings.fhir_path).rstrip("/")


def _ui_url(request: Request, name: str) -> str:
    return str(request.url_for(name))


@cache
def _signer(secret: str, purpose: str) -> CookieSigner:
    return CookieSigner(secret, purpose)


def _session_signer(services: Services, purpose: str) -> CookieSigner:
    return _signer(services.ui_session_secret, purpose)


@cache
def _provider(issuer: str, client_id: str, scopes: str) -> OpenIdProvider:
    return OpenIdProvider(issuer, client_id, scopes)


def provider_of(services: Services) -> OpenIdProvider | None:
    settings = services.settings
    if not settings.auth_issuer or not settings.ui_client_id:
        return None
    return _provider(settings.auth_issuer, settings.ui_client_id, settings.ui_scopes)


def viewer(request: Request) -> Viewer:
    """Who is looking: nobody in particular with access control off, else the session's verified user."""
    services = _services(request)
    base = fhir_base(request)
    page = request.url.path.removeprefix(_mounted(request)) or PREFIX
    address = request.client.host if request.client else None
    verifier = services.token_verifier
    if verifier is None:
        return Viewer(services, None, base, page, address)
    session = _session_signer(services, "session").loads(request.cookies.get(SESSION_COOKIE))
    if session is None or not isinstance(session.get("token"), str):
        raise LoginNeeded()
    try:
        principal = verifier.verify(session["token"], base)
    except TokenRejected as error:
        raise LoginNeeded(str(error)) from None
    except IssuerUnavailable as error:
        raise FhirError(503, str(error), code="transient") from None
    return Viewer(services, principal, base, page, address, _user(session["token"]))


def _user(token: str) -> str | None:
    """The person a (verified) user token names: ``preferred_username`` (OpenID Connect), else ``sub``."""
    claims = jwt.decode(token, options={"verify_signature": False})
    for name in ("preferred_username", "sub"):
        if isinstance(claims.get(name), str) and claims[name]:
            return str(claims[name])[:100]
    return None


def _render(request: Request, template: str, who: Viewer | None, status: int = 200, **context: Any) -> HTMLResponse:
    settings = _services(request).settings
    response = templates.TemplateResponse(
        request,
        template,
        {"viewer": who, "auth_off": settings.auth == "none", **context},
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"  # pages hold patient-level data
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# pages -----------------------------------------------------------------------------------------
@router.get("", name="ui_home")
def home(request: Request) -> Response:
    return RedirectResponse(_ui_url(request, "ui_ingest"), 303)


@router.get("/ingest", name="ui_ingest")
def ingest(
    request: Request, who: Viewer = Depends(viewer), path: str = "", sender: str = "", since: str = ""
) -> Response:
    try:
        found = pages.ingest_activity(who, path, sender, since)
    except FhirError as error:  # a filter the search refuses (a malformed date)
        return _render(request, "error.html", who, error.status, message=error.diagnostics, retry=False)
    return _render(request, "ingest.html", who, **found)


@router.get("/patients", name="ui_patients")
def patients(request: Request, who: Viewer = Depends(viewer), cursor: str | None = None) -> Response:
    return _render(request, "patients.html", who, **pages.patients(who, cursor))


@router.get("/patients/{patient_id}", name="ui_patient")
def patient(patient_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    return _resource_page(request, who, "patient.html", pages.patient(who, patient_id), f"Patient/{patient_id}")


@router.get("/studies/{study_id}", name="ui_study")
def study(study_id: str, request: Request, who: Viewer = Depends(viewer)) -> Response:
    return _resource_page(request, who, "study.html", pages.study(who, study_id), f"ImagingStudy/{study_id}")


def _resource_page(
    request: Request, who: Viewer, template: str, found: dict[str, Any] | None, reference: str
) -> Response:
    if found is None:
        return _render(request, "error.html", who, 404, message=f"{reference} is not known")
    return _render(request, template, who, **found)


@router.get("/catalogue", name="ui_catalogue")
def catalogue(request: Request, who: Viewer = Depends(viewer)) -> Response:
    return _render(request, "catalogue.html", who, **pages.catalogue(who))


@router.get("/audit", name="ui_audit")
def audit(request: Request, who: Viewer = Depends(viewer)) -> Response:
    filters = {name: request.query_params.get(name, "") for name in pages.AUDIT_FILTERS}
    try:
        found = pages.audit(who, filters)
    except FhirError as error:
        return _render(request, "error.html", who, error.status, message=error.diagnostics, retry=False)
    return _render(request, "audit.html", who, **found)


@router.get("/static/{name}", name="ui_static")
def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    body = files("fhir_bridge.ui").joinpath(f"static/{name}").read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=3600"})


# login (SMART App Launch, standalone; OpenID Connect authorization code with PKCE) ------------------
@router.get("/login", name="ui_login")
def login(request: Request, next: str = "") -> Response:
    services = _services(request)
    target = next if next.startswith(f"{PREFIX}/") else f"{PREFIX}/ingest"  # a path of this UI, nowhere else
    if services.token_verifier is None:
        return RedirectResponse(_mounted(request) + target, 303)
    provider = provider_of(services)
    if provider is None:
        return _render(
            request,
            "error.html",
            None,
            503,
            message="Logging in needs the site's OpenID Connect server: set FHIR_BRIDGE_AUTH_ISSUER and "
            "FHIR_BRIDGE_UI_CLIENT_ID (a public client whose redirect URI is "
            f"{_ui_url(request, 'ui_callback')}).",
        )
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    try:
        url = provider.authorization_url(_ui_url(request, "ui_callback"), state, challenge, fhir_base(request))
    except LoginFailed as error:
        return _render(request, "error.html", None, 503, message=str(error))
    response = RedirectResponse(url, 303)
    cookie = _session_signer(services, "login").dumps(
        {"state": state, "verifier": verifier, "next": target}, time.time() + LOGIN_SECONDS
    )
    _set_cookie(request, response, LOGIN_COOKIE, cookie, LOGIN_SECONDS)
    return response


@router.get("/callback", name="ui_callback")
async def callback(request: Request) -> Response:
    services = _services(request)
    provider = provider_of(services)
    started = _session_signer(services, "login").loads(request.cookies.get(LOGIN_COOKIE))
    query = request.query_params
    if provider is None or services.token_verifier is None:
        return RedirectResponse(_ui_url(request, "ui_ingest"), 303)
    if "error" in query:
        reason = f"{query['error']}: {query.get('error_description', '')}".strip(": ")
        return _render(request, "error.html", None, 401, message=f"The login was refused ({reason}).", retry=True)
    if started is None or not secrets.compare_digest(str(started.get("state")), query.get("state", "")):
        return _render(request, "error.html", None, 400, message="This login is unknown or expired.", retry=True)
    try:
        answer = await run_in_threadpool(
            provider.exchange, query.get("code", ""), _ui_url(request, "ui_callback"), started["verifier"]
        )
        token = str(answer["access_token"])
        principal = await run_in_threadpool(services.token_verifier.verify, token, fhir_base(request))
    except LoginFailed as error:
        return _render(request, "error.html", None, 502, message=str(error), retry=True)
    except (TokenRejected, IssuerUnavailable) as error:
        return _render(request, "error.html", None, 401, message=f"The token is not accepted: {error}", retry=True)
    lifetime = max(int(principal.expires - time.time()), 1)
    cookie = _session_signer(services, "session").dumps({"token": token}, principal.expires)
    if len(cookie) > MAX_COOKIE:
        return _render(request, "error.html", None, 502, message="The access token is too large for a session cookie.")
    back = started.get("next")
    response = RedirectResponse(_mounted(request) + back if back else _ui_url(request, "ui_ingest"), 303)
    _set_cookie(request, response, SESSION_COOKIE, cookie, lifetime)
    response.delete_cookie(LOGIN_COOKIE, path=_cookie_path(request))
    return response


@router.get("/logout", name="ui_logout")
def logout(request: Request) -> Response:
    response = _render(request, "error.html", None, 200, message="You are logged out.", retry=True)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=_cookie_path(request),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
    )


def _mounted(request: Request) -> str:
    """Where this app is mounted inside a host app or behind a proxy's path (``""`` at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _cookie_path(request: Request) -> str:
    return _mounted(request) + PREFIX


def install(app: FastAPI) -> None:
    """What turns a missing login or scope into a page rather than an error (the app adds ``router``)."""

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, error: LoginNeeded) -> Response:
        path = request.url.path.removeprefix(_mounted(request))
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{_ui_url(request, 'ui_login')}?next={quote(path + query)}", 303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, error: Forbidden) -> Response:
        return _render(request, "error.html", None, 403, message=str(error), missing=error.missing)
