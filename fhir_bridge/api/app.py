"""``create_app``: the ASGI application, ready to run alone or to mount inside another service."""

from __future__ import annotations

import logging
import traceback
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from fhir_bridge.api import audit, auth, bulk, catalogue, dicomweb, eucaim, fhir, ingest, limits
from fhir_bridge.api.access import AccessControl
from fhir_bridge.api.rendering import error_response
from fhir_bridge.audit.log import AuditLog
from fhir_bridge.errors import FhirError
from fhir_bridge.ingest.clinical import ClinicalIngest
from fhir_bridge.ingest.dicom import DicomIngest, dicom_mapper
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.server import FhirServer
from fhir_bridge.mapping.clinical import MappingRegistry
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from fhir_bridge.security.clients import BuiltinIssuer, ClientRegistry
from fhir_bridge.security.tokens import ExternalIssuer, TokenVerifier
from fhir_bridge.settings import Settings
from fhir_bridge.store.database import audit_engines, create_engines, prepare_schema, read_info
from fhir_bridge.store.store import Store

log = logging.getLogger("fhir_bridge")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database schema is created or upgraded here, before the first request.

    The schema is prepared eagerly (not in a lifespan handler) because a host application that
    mounts this one does not run the lifespan of mounted apps. A configuration that is unsafe to
    run (pseudonymisation without a site secret) raises ``ConfigurationError`` before anything else.
    """
    settings = settings or Settings()
    mapper = dicom_mapper(settings)  # refuses an unsafe privacy configuration before touching the database
    engines = create_engines(settings.database_url)
    prepare_schema(engines)
    store = Store(engines, enforce_references=settings.enforce_referential_integrity)
    server = FhirServer(
        store,
        CursorSigner(read_info(engines, "cursor_secret")),
        limits.search_limits(settings),
    )
    app = FastAPI(
        title="fhir-bridge",
        summary="Imaging-to-FHIR bridge: a FHIR R4 server on a versioned store",
        version=_version(),
    )
    app.state.settings = settings
    app.state.store = store
    app.state.fhir_server = server
    app.state.engines = engines
    app.state.dicom_ingest = DicomIngest(store, server, mapper)
    app.state.mapping_registry = MappingRegistry.for_site(settings.mappings_dir)
    app.state.clinical_ingest = ClinicalIngest(
        store, server, mapper.policy, mapper.config.patient_identifier_system, mapper.config.time_zone
    )
    app.state.audit_log = AuditLog(audit_engines(settings.database_url, engines))
    if app.state.audit_log.engines is not engines:
        app.router.on_shutdown.append(app.state.audit_log.engines.dispose)
    app.state.token_issuer = BuiltinIssuer(engines, ClientRegistry(engines), settings.auth_token_lifetime_s)
    auth.install(app, settings.fhir_path)  # before the REST routes: .well-known and auth are not types
    app.include_router(audit.router, prefix=settings.fhir_path, tags=["Audit trail"])  # before the REST routes
    bulk.install(app, settings, engines)  # before the REST routes: Patient/$export is not a read
    catalogue.install(app, settings, store)  # before the REST routes: /catalogue is not a type
    eucaim.install(app, settings, store)  # before the REST routes: /eucaim is not a type
    app.include_router(ingest.router, prefix="/ingest", tags=["Clinical ingest"])  # before the REST routes
    app.include_router(fhir.router, prefix=settings.fhir_path, tags=["FHIR R4"])
    app.include_router(dicomweb.router, prefix=settings.dicomweb_path, tags=["DICOMweb STOW-RS"])
    if settings.fhir_path:
        for endpoint, methods in fhir.BASE_ROUTES:
            app.add_api_route(settings.fhir_path, endpoint, methods=methods, include_in_schema=False)
    _install_error_handlers(app)
    limits.install(app, settings)  # request body sizes (413) and idle timeout (408), per media type
    _install_access_control(app, settings)  # outermost: refuse, and audit, before anything else runs
    return app


def _install_access_control(app: FastAPI, settings: Settings) -> None:
    issuer: BuiltinIssuer = app.state.token_issuer
    verifier = None
    if settings.auth == "none":
        log.warning(
            "access control is OFF (FHIR_BRIDGE_AUTH=none): anyone who reaches %s can read and write "
            "patient-level data; use this on loopback only",
            f"{settings.host}:{settings.port}",
        )
    else:
        external = None
        if settings.auth_issuer:
            external = ExternalIssuer(settings.auth_issuer, settings.auth_audience, settings.auth_jwks_url)
        verifier = TokenVerifier(issuer.issuer, issuer.public_key, external)
    app.state.token_verifier = verifier
    secret = settings.pseudonym_secret()
    keyed_hash = partial(Pseudonymiser(secret).keyed_hash, "audit-search") if secret else None
    app.add_middleware(
        AccessControl, settings=settings, verifier=verifier, audit=app.state.audit_log, keyed_hash=keyed_hash
    )


def _version() -> str:
    try:
        return version("fhir-bridge")
    except PackageNotFoundError:
        return "0"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def _fhir_error(_request: Request, error: FhirError):  # type: ignore[no-untyped-def]
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, error: HTTPException):  # type: ignore[no-untyped-def]
        code = {404: "not-found", 405: "not-supported"}.get(error.status_code, "processing")
        return error_response(
            FhirError(error.status_code, str(error.detail), code=code, headers=dict(error.headers or {}))
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError):  # type: ignore[no-untyped-def]
        where = [".".join(str(p) for p in e["loc"]) for e in error.errors()]
        return error_response(FhirError(400, f"invalid request: {error.errors()}", code="invalid", expression=where))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception):  # type: ignore[no-untyped-def]
        # Only the type and the code location: messages (e.g. a database error) can carry request data.
        log.error("unexpected %s at\n%s", type(error).__name__, "".join(traceback.format_tb(error.__traceback__)))
        return error_response(FhirError(500, f"internal error ({type(error).__name__})", code="exception"))
