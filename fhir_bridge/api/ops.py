"""The operator's routes: ``/`` (an index of the service), ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` says the process answers; ``/readyz`` that it can serve: the database answers, its
schema is this fhir-bridge's, the pseudonym key is loaded. Both are unauthenticated and cheap (one
small query), for load balancers, orchestrators and systemd watchdogs. ``/metrics`` is Prometheus's
text format, installed and protected as the ``metrics`` setting says (see fhir_bridge/metrics.py).
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_bridge.api.context import services
from fhir_bridge.api.routing import include_routes
from fhir_bridge.metrics import DATABASE_CONNECTIONS, exposition
from fhir_bridge.version import package_version

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process answers", responses={200: {"description": "up"}})
async def healthz() -> dict[str, str]:
    return {"status": "up"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, schema current, pseudonym key loaded",
    responses={200: {"description": "ready"}, 503: {"description": "not ready: the failing checks say why"}},
)
async def readyz(request: Request) -> JSONResponse:
    problems = await run_in_threadpool(services(request).readiness)
    checks = {name: problems.get(name, "ok") for name in ("database", "schema", "pseudonym_key")}
    return JSONResponse(
        {"status": "not ready" if problems else "ready", "checks": checks},
        status_code=503 if problems else 200,
        headers={"Cache-Control": "no-store"},
    )


async def metrics(request: Request) -> Response:
    for (engine, state), value in services(request).pool_status().items():
        DATABASE_CONNECTIONS.labels(engine, state).set(value)
    return Response(exposition(), media_type=PROMETHEUS_TEXT)


def _links(request: Request) -> list[tuple[str, str, str]]:
    settings = services(request).settings
    root = request.scope.get("root_path", "")
    app = request.app
    links = [
        ("fhir", f"{root}{settings.fhir_path}/metadata", "FHIR R4 API: its CapabilityStatement"),
        ("stow-rs", f"{root}{settings.dicomweb_path}/studies", "DICOMweb STOW-RS (POST DICOM instances)"),
        ("catalogue", f"{root}/catalogue", "DCAT-AP description of the dataset"),
        ("ui", f"{root}/ui", "the data steward's web pages: ingest activity, browse, catalogue, audit"),
        ("health", f"{root}/healthz", "liveness"),
        ("ready", f"{root}/readyz", "readiness: database, schema, pseudonym key"),
    ]
    documentation = (  # served as the api_docs setting says
        ("docs", app.docs_url, "the HTTP API, interactive (Swagger UI)"),
        ("redoc", app.redoc_url, "the HTTP API, as a document"),
        ("openapi", app.openapi_url, "the OpenAPI document"),
    )
    links += [(name, f"{root}{url}", text) for name, url, text in documentation if url]
    if settings.metrics != "off":
        links.append(("metrics", f"{root}/metrics", "Prometheus metrics"))
    return links


async def index(request: Request) -> Response:
    links = _links(request)
    version = package_version()
    if "text/html" in request.headers.get("accept", ""):  # a browser
        rows = "".join(
            f'<li><a href="{escape(href)}">{escape(href)}</a>: {escape(text)}</li>' for _, href, text in links
        )
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>fhir-bridge</title>"
            f"<h1>fhir-bridge {escape(version)}</h1><p>Imaging-to-FHIR bridge.</p><ul>{rows}</ul></html>"
        )
        return HTMLResponse(page)
    body: dict[str, Any] = {"service": "fhir-bridge", "version": version, "links": {}}
    for name, href, text in links:
        body["links"][name] = {"href": href, "title": text}
    return JSONResponse(body)


def install(app: FastAPI, fhir_path: str, metrics_mode: str) -> None:
    """The routes; ``/`` only when the FHIR base is not the app's root, ``/metrics`` unless it is off."""
    include_routes(app, router, tags=["Operations"])
    if fhir_path.strip("/"):
        summary = "Index: where the FHIR API, its docs and the health checks are (HTML for a browser)"
        app.add_api_route("/", index, methods=["GET"], summary=summary, tags=["Operations"])
    if metrics_mode != "off":
        app.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics", tags=["Operations"])
