"""``fhir-bridge serve``: the FHIR API, STOW-RS, bulk export and the catalogue over HTTP (and the listeners)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
from typing import TYPE_CHECKING, Any

from fhir_bridge.cli.common import add_database, add_key_file, refuse, settings_environment, settings_from
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.logs import configure as configure_logging
from fhir_bridge.logs import dict_config as log_config
from fhir_bridge.services import Services
from fhir_bridge.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

APP_FACTORY = "fhir_bridge.cli.serve:worker_app"  # each worker process builds its own app and Services
# The young generation's collection threshold in a serving process (CPython's default: 700 objects).
# Requests waiting for their audit commit are alive at once, each holding a few dozen objects: at the
# default, 16 clients set off a collection every few requests, and the survivors it promoted made the
# full collections (100 ms each over the start-up heap) run every few seconds. Objects that die by
# reference count (nearly all of a request's) never need the collector at all.
YOUNG_COLLECTION_THRESHOLD = 20_000
# uvicorn restarts a worker that does not answer its supervisor's ping in time: a worker importing the
# app on a busy machine takes longer than uvicorn's 5 s default before it can answer
WORKER_HEALTHCHECK_S = 60


def serve(arguments: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.app import create_app

    workers = arguments.workers or 1
    try:
        settings = settings_from(arguments)
        configure_logging(settings.log_level, json_lines=settings.log_format == "json")  # uvicorn's lines too
        services = Services.from_settings(settings)
        if workers == 1:
            app = create_app(services=services)
            settle_heap()
        else:  # refuse a bad configuration here, once, and set the schema up before the workers start
            services.start()
    except ConfigurationError as error:
        return refuse(error)
    settings = services.settings
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
    mllp = None
    if settings.mllp_port is not None:  # the MLLP listener too: the clinical ingest, mappings and audit
        from fhir_bridge.listeners.mllp import MllpListener

        try:
            mllp = MllpListener.from_settings(
                settings, services.clinical_ingest, services.mappings, services.audit_log.record
            )
            mllp.start()
        except ConfigurationError as error:
            if listener is not None:
                listener.stop()
            return refuse(error)
    try:
        if workers == 1:
            uvicorn.run(app, **uvicorn_options(settings))
        else:
            for name, value in settings_environment(arguments).items():  # what the workers' Settings() read
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            uvicorn.run(
                APP_FACTORY,
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
                **uvicorn_options(settings),
            )
    finally:
        if listener is not None:
            listener.stop()
        if mllp is not None:
            mllp.stop()
        if workers > 1:
            services.close()
    return 0


def settle_heap() -> None:
    """Keep what start-up built (definitions, code tables, the app) out of every later garbage collection,
    and collect the young generation less often (``YOUNG_COLLECTION_THRESHOLD``). Called once the serving
    process has built its app; a full collection then only looks at what requests left behind."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def worker_app() -> FastAPI:
    """The app of one ``serve --workers N`` process (uvicorn's factory): its own Services, its heap settled."""
    from fhir_bridge.api.app import create_app

    app = create_app()
    settle_heap()
    return app


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How ``serve`` runs uvicorn: X-Forwarded-* headers are believed from the trusted proxies only."""
    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level, json_lines=settings.log_format == "json"),  # in each worker
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.trusted_proxies) or None,
    }


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1 or more)")
    return int(text)


def register(commands: Any) -> None:
    run = commands.add_parser("serve", help="run the FHIR API and STOW-RS (settings also from FHIR_BRIDGE_* variables)")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default 8080)")
    run.add_argument(
        "--workers",
        type=_positive,
        help="worker processes sharing the port (default 1); each builds its own services over the same database",
    )
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
