"""``create_app``: the ASGI application, ready to run alone or to mount inside another service."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from fhir_bridge.api import (
    audit,
    auth,
    bulk,
    capabilities,
    catalogue,
    clinical,
    dicomweb,
    eucaim,
    fhir,
    fhir_push,
    limits,
    operations,
    ops,
)
from fhir_bridge.api.access import AccessControl, annotate
from fhir_bridge.api.observe import Observe
from fhir_bridge.api.placement import SearchPlacement
from fhir_bridge.api.rendering import error_response
from fhir_bridge.api.routing import include_routes, index_routes
from fhir_bridge.errors import ConfigurationError, FhirError
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings
from fhir_bridge.ui.routes import install as install_ui
from fhir_bridge.ui.routes import router as ui_router
from fhir_bridge.version import package_version

log = logging.getLogger("fhir_bridge")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the app over ``services`` (by default, those of ``settings``); every service starts here.

    The database schema is created or upgraded here, before the first request, not in a lifespan
    handler: a host application that mounts this one does not run the lifespan of mounted apps. A
    configuration that is unsafe to run (pseudonymisation without a site secret) raises
    ``ConfigurationError`` before anything else.
    """
    services = (services or Services.from_settings(settings)).start()
    settings = services.settings
    docs = settings.api_docs if settings.api_docs is not None else settings.auth == "none"
    app = FastAPI(
        title="fhir-bridge",
        summary="Imaging-to-FHIR bridge: a FHIR R4 server on a versioned store",
        version=package_version(),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,  # app.openapi() still builds it (fhir-bridge openapi)
    )
    app.state.services = services
    app.state.search_placement = SearchPlacement(on_the_loop=services.store.reads_never_wait)
    app.router.on_shutdown.append(services.close)
    services.bulk_exports.worker.resume_pending()  # export jobs a restart left pending
    # Routers whose paths could be taken for FHIR types (Patient/$export, /catalogue, /eucaim, .well-known,
    # auth, AuditEvent, /ingest) come before the FHIR REST routes.
    auth.install(app, settings.fhir_path)
    include_routes(app, audit.router, prefix=settings.fhir_path, tags=["Audit trail"])
    include_routes(app, bulk.router, prefix=settings.fhir_path, tags=["FHIR Bulk Data"])
    include_routes(app, catalogue.router, tags=["Catalogue (DCAT-AP)"])
    include_routes(app, eucaim.router, tags=["EUCAIM federated search"])
    include_routes(app, clinical.router, prefix="/ingest", tags=["Clinical ingest"])
    include_routes(app, fhir_push.router, prefix="/ingest", tags=["FHIR ingest"])
    include_routes(app, capabilities.router, prefix=settings.fhir_path, tags=["FHIR R4"])
    include_routes(app, operations.router, prefix=settings.fhir_path, tags=["FHIR R4"])  # before [type]/[id]
    include_routes(app, fhir.router, prefix=settings.fhir_path, tags=["FHIR R4"])
    # what the CapabilityStatement describes: the routes of the FHIR routers included above
    app.state.fhir_routers = (audit.router, bulk.router, operations.router, fhir.router)
    include_routes(app, dicomweb.router, prefix=settings.dicomweb_path, tags=["DICOMweb STOW-RS"])
    include_routes(app, ui_router)  # the data steward's web UI at /ui (not in the OpenAPI document: HTML pages)
    install_ui(app)
    if settings.fhir_path:
        for endpoint, methods in fhir.BASE_ROUTES:
            app.add_api_route(settings.fhir_path, endpoint, methods=methods, include_in_schema=False)
    ops.install(app, settings.fhir_path, settings.metrics)  # /, /healthz, /readyz, /metrics
    index_routes(app)  # every route is added: look them up by method and path segments
    _install_error_handlers(app)
    limits.install(app, settings)  # request body sizes (413) and idle timeout (408), per media type
    _install_access_control(app, services)  # refuse, and audit, before anything else runs
    app.add_middleware(Observe)  # outermost: the request id (logs, X-Request-Id) and the metrics of every answer
    _warn_of_placeholders(services)
    return app


def _warn_of_placeholders(services: Services) -> None:
    placeholders = services.catalogue_config.placeholders()
    if placeholders:
        log.warning(
            "the catalogue publishes placeholder values for %s: set them (FHIR_BRIDGE_CATALOGUE_%s, or the "
            "catalogue file) before harvesters read /catalogue",
            ", ".join(placeholders),
            "/".join(name.upper() for name in placeholders),
        )


def _install_access_control(app: FastAPI, services: Services) -> None:
    settings = services.settings
    if settings.metrics == "token" and settings.auth == "none":
        raise ConfigurationError(
            'metrics="token" needs access control (auth="smart") to check tokens: use metrics="open" or "off"'
        )
    if settings.auth == "none":
        log.warning(
            "access control is OFF (FHIR_BRIDGE_AUTH=none): anyone who reaches %s can read and write "
            "patient-level data; use this on loopback only",
            f"{settings.host}:{settings.port}",
        )
    app.add_middleware(
        AccessControl,
        settings=settings,
        verifier=services.token_verifier,
        audit=services.audit_log,
        keyed_hash=services.audit_search_hash,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, error: FhirError):  # type: ignore[no-untyped-def]
        annotate(request, detail=error.diagnostics)  # the trail records why, as the client was told
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException):  # type: ignore[no-untyped-def]
        code = {404: "not-found", 405: "not-supported"}.get(error.status_code, "processing")
        annotate(request, detail=str(error.detail))
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
