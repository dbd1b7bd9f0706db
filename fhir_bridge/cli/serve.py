"""``fhir-bridge serve``: the FHIR API, STOW-RS, bulk export and the catalogue over HTTP."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from fhir_bridge.cli.common import add_database, add_key_file, refuse, settings_from
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.logs import configure as configure_logging
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings


def serve(arguments: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.app import create_app

    try:
        settings = settings_from(arguments)
        configure_logging(settings.log_level, json_lines=settings.log_format == "json")  # uvicorn's lines too
        services = Services.from_settings(settings)
        app = create_app(services=services)
    except ConfigurationError as error:
        return refuse(error)
    logging.getLogger("fhir_bridge").info(
        "FHIR base URL http://%s:%s%s, STOW-RS http://%s:%s%s/studies (database: %s)",
        settings.host,
        settings.port,
        settings.fhir_path,
        settings.host,
        settings.port,
        settings.dicomweb_path,
        settings.database_url.split("@")[-1],
    )
    listener = None
    if settings.dimse_port is not None:  # the DICOM listener shares the app's services (ingest, store, audit)
        from fhir_bridge.listeners.dimse import DimseListener

        try:
            listener = DimseListener.from_settings(settings, services.dicom_ingest, services.audit_log.record)
        except ConfigurationError as error:
            return refuse(error)
        listener.start()
    try:
        uvicorn.run(app, **uvicorn_options(settings))
    finally:
        if listener is not None:
            listener.stop()
    return 0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``serve`` runs uvicorn: X-Forwarded-* headers are believed from the trusted proxies only."""
    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "log_level": settings.log_level,
        "log_config": None,  # uvicorn's loggers propagate to the handler configure_logging set up
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies) or None,
    }


def register(commands: Any) -> None:
    run = commands.add_parser("serve", help="run the FHIR API and STOW-RS (settings also from FHIR_BRIDGE_* variables)")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default 8080)")
    add_database(run)
    add_key_file(run)
    run.add_argument(
        "--auth", choices=["smart", "none"], help="smart (default): bearer tokens required; none: no access control"
    )
    run.add_argument(
        "--upgrade-schema",
        action="store_true",
        default=None,
        help="upgrade an older database schema at start (else the start is refused; see `fhir-bridge db upgrade`)",
    )
    run.set_defaults(handler=serve)
