"""What every route needs of its request: the services, the settings, the FHIR base URL, the body."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from fhir_bridge.services import Services
from fhir_bridge.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


def services(request: Request) -> Services:
    return request.app.state.services


def settings(request: Request) -> Settings:
    return services(request).settings


def base_url(settings: Settings, scope: Scope) -> str:
    """The FHIR base URL clients see: the configured public one, else one the request cannot choose.

    With access control on, the Host header never makes a URL: token audiences, discovery, manifest
    and Location URLs would otherwise follow whatever Host a caller sends. Without a configured
    ``public_base_url`` they name the address the server is bound to (``serve`` refuses to listen
    beyond loopback without it). With access control off (loopback trials) the request's Host is used.
    ``root_path`` is where this app is mounted (a host app's Mount, or a proxy's ``--root-path``).
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    root = scope.get("root_path", "").rstrip("/")
    if settings.auth != "none":
        return f"{bound_origin(settings, scope)}{root}{settings.fhir_path}"
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
    if not host and scope.get("server"):
        host = f"{scope['server'][0]}:{scope['server'][1]}"
    return f"{scope.get('scheme', 'http')}://{host}{root}{settings.fhir_path}"


def bound_origin(settings: Settings, scope: Scope) -> str:
    """``scheme://host[:port]`` of the socket the server listens on (ASGI ``server``), not of any header."""
    server = scope.get("server") or (settings.host, settings.port)
    scheme = "https" if scope.get("scheme") == "https" else "http"
    host, port = server[0], server[1]
    if ":" in str(host):  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def fhir_base(request: Request) -> str:
    return base_url(settings(request), request.scope)


async def read_by_id(request: Request, read: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``read`` (one read by id) where it costs least: on the event loop where the store's reads
    never wait (SQLite), else on a worker thread. Handing a read to a thread and back cost more CPU
    than the read itself (GIL hand-offs under many clients); searches always run on a thread."""
    if services(request).store.reads_never_wait:
        return read(*args, **kwargs)
    return await run_in_threadpool(read, *args, **kwargs)


async def read_body(request: Request) -> bytes:
    """The request body; its size and pace are limited by ``api.limits`` (413, 408) while it streams."""
    return await request.body()


def query_parameters(request: Request) -> list[tuple[str, str]]:
    """The query's parameters in order, without the presentation ones (``_format``, ``_pretty``)."""
    return [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")]


def prefer(request: Request) -> dict[str, str]:
    """The Prefer header (RFC 7240), lower-cased: ``{"respond-async": "", "return": "minimal"}``."""
    return preferences(request.headers.get("prefer", ""))


def preferences(header: str) -> dict[str, str]:
    """``prefer`` of the header's value."""
    found = {}
    for item in header.replace(";", ",").split(","):
        key, _, value = item.strip().partition("=")
        if key:
            found[key.strip().lower()] = value.strip().strip('"').lower()
    return found
