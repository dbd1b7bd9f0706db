"""OAuth 2.0 endpoints of the built-in SMART Backend Services issuer, and SMART discovery.

``[base]/.well-known/smart-configuration`` tells clients where to get tokens: the site's own
identity provider when one is configured, and this server's token endpoint
(``[base]/auth/token``, client credentials with a signed JWT assertion) in any case.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.context import fhir_base, services
from fhir_bridge.api.media_types import essence
from fhir_bridge.api.routing import include_routes
from fhir_bridge.security.clients import ASSERTION_ALGORITHMS, BuiltinIssuer, OAuthError
from fhir_bridge.security.scopes import AUDIT_SCOPE

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = ["system/*.cruds", "system/*.rs", "system/ImagingStudy.rs", "system/Patient.rs", AUDIT_SCOPE]
TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_assertion_type", "client_assertion", "scope"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {"type": "string", "description": "JWT signed by the client's key"},
                        "scope": {"type": "string", "example": "system/ImagingStudy.rs"},
                    },
                }
            }
        },
    }
}
TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "An access token", "content": {"application/json": {}}},
    400: {"description": "An OAuth 2.0 error (RFC 6749 5.2)", "content": {"application/json": {}}},
    401: {"description": "invalid_client (RFC 6749 5.2)", "content": {"application/json": {}}},
    429: {
        "description": "Too many failed token requests from this address (Retry-After)",
        "content": {"application/json": {}},
    },
}


def _issuer(request: Request) -> BuiltinIssuer:
    return services(request).token_issuer


def smart_configuration(request: Request) -> dict[str, Any]:
    """The SMART App Launch 2.x discovery document of this server."""
    settings = services(request).settings
    base = fhir_base(request)
    configuration: dict[str, Any] = {
        "issuer": _issuer(request).issuer,
        "jwks_uri": f"{base}/auth/jwks",
        "token_endpoint": f"{base}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }
    if settings.auth_issuer:
        configuration["external_issuer"] = settings.auth_issuer
    return configuration


@router.get("/.well-known/smart-configuration", summary="SMART configuration (where to get tokens)")
def well_known(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(request))


@router.get("/auth/jwks", summary="The public keys that sign this server's access tokens")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_issuer(request).jwks)


@router.post(
    "/auth/token",
    summary="SMART Backend Services token endpoint (client credentials, private_key_jwt)",
    openapi_extra=TOKEN_FORM,
    responses=TOKEN_RESPONSES,
)
async def token(request: Request) -> JSONResponse:
    content_type = essence(request.headers.get("content-type"))
    if content_type != "application/x-www-form-urlencoded":
        error = OAuthError(400, "invalid_request", "send the token request as application/x-www-form-urlencoded")
        return JSONResponse(error.body(), error.status, headers=NO_STORE)
    form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True))
    audiences = [f"{fhir_base(request)}/auth/token"]
    address = request.client.host if request.client else "unknown"  # X-Forwarded-For only from trusted proxies
    try:
        answer = await run_in_threadpool(_issuer(request).issue, form, audiences, address)
    except OAuthError as error:
        return JSONResponse(error.body(), error.status, headers={**NO_STORE, **error.headers})
    return JSONResponse(answer, headers=NO_STORE)


def install(app: FastAPI, prefix: str) -> None:
    """Add the routes under the FHIR base (before the REST routes) and discovery at the app root too."""
    include_routes(app, router, prefix=prefix, tags=["Authorisation"])
    if prefix:
        app.add_api_route("/.well-known/smart-configuration", well_known, methods=["GET"], include_in_schema=False)
