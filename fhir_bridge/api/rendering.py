"""HTTP conventions of the FHIR REST API: formats, Prefer, bodies, and errors as OperationOutcome."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Any

import orjson
from fastapi import Request, Response

from fhir_bridge.api.context import preferences
from fhir_bridge.api.media_types import essence
from fhir_bridge.errors import FhirError, operation_outcome
from fhir_bridge.interactions.writes import Outcome
from fhir_bridge.store.versions import StoredVersion

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
FORMAT_ALIASES = {
    "json": FHIR_JSON,
    "application/json": "application/json",
    "application/fhir+json": FHIR_JSON,
    "application/json+fhir": FHIR_JSON,
}


@dataclass(frozen=True)
class Presentation:
    """How the client wants the response: media type, pretty printing, Prefer."""

    media_type: str
    pretty: bool
    prefer_return: str
    strict: bool


async def presentation(request: Request) -> Presentation:
    """``presentation_of`` as a dependency: ``async`` although it does no I/O, as a plain ``def``
    dependency costs a thread-pool hop per request."""
    return presentation_of(request)


def presentation_of(request: Request) -> Presentation:
    """Read ``_format``, ``Accept``, ``_pretty`` and ``Prefer``; 406 for formats other than JSON."""
    if request.scope.get("query_string"):
        query = request.query_params
        wanted, pretty = query.get("_format"), query.get("_pretty", "false")
    else:
        wanted, pretty = None, "false"
    headers = request.headers
    return _presentation(wanted, pretty, headers.get("accept", ""), headers.get("prefer", ""))


@lru_cache(maxsize=256)  # clients send few distinct combinations; a 406 is raised, never cached
def _presentation(wanted: str | None, pretty: str, accept: str, prefer_header: str) -> Presentation:
    if wanted is not None:
        media_type = FORMAT_ALIASES.get(wanted.strip().lower())
        if media_type is None:
            raise FhirError(
                406,
                f"_format {wanted!r} is not supported: this server speaks JSON (application/fhir+json)",
                code="not-supported",
                expression="_format",
            )
    else:
        media_type = _negotiate(accept)
    preferred = preferences(prefer_header)
    return Presentation(
        media_type=media_type,
        pretty=pretty.lower() == "true",
        prefer_return=preferred.get("return", "representation"),
        strict=preferred.get("handling") == "strict",
    )


def _negotiate(accept: str) -> str:
    if not accept.strip():
        return FHIR_JSON
    offered = [essence(part) for part in accept.split(",")]
    for media_type in offered:
        if media_type in ("application/fhir+json", "application/json+fhir", "*/*", "application/*"):
            return FHIR_JSON
        if media_type == "application/json":
            return "application/json"
    raise FhirError(
        406, f"cannot answer in {accept!r}: this server speaks JSON (application/fhir+json)", code="not-supported"
    )


def require_json_body(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type and essence(content_type) not in JSON_TYPES:
        raise FhirError(
            415, f"Content-Type {content_type!r} is not supported: send application/fhir+json", code="not-supported"
        )


async def spool_body(request: Request, memory_bytes: int) -> tuple[IO[bytes], int]:
    """The request body in a temporary file (in memory up to ``memory_bytes``) and its size; 400 when
    empty. Its size and pace are limited while it streams by ``api.limits`` (413, 408)."""
    spool = tempfile.SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115 (handed to the caller)
    size = 0
    try:
        async for chunk in request.stream():
            spool.write(chunk)
            size += len(chunk)
    except BaseException:
        spool.close()
        raise
    if size == 0:
        spool.close()
        raise FhirError(400, "the request body is empty", code="invalid")
    spool.seek(0)
    return spool, size


def render(
    body: Any, status: int = 200, view: Presentation | None = None, headers: dict[str, str] | None = None
) -> Response:
    """Serialise ``body`` (dicts may hold pre-serialised ``orjson.Fragment`` resources)."""
    media_type = view.media_type if view else FHIR_JSON
    if isinstance(body, bytes):
        content = body
        if view and view.pretty:
            content = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    else:
        content = orjson.dumps(body)
        if view and view.pretty:  # fragments are copied verbatim by orjson: re-read to indent them
            content = orjson.dumps(orjson.loads(content), option=orjson.OPT_INDENT_2)
    return Response(content, status_code=status, media_type=f"{media_type};charset=utf-8", headers=headers)


def head_response(request: Request, response: Response) -> Response:
    """The answer to a HEAD: the GET's status and headers (Content-Length included), no body (RFC 9110 9.3.2)."""
    if request.method != "HEAD":
        return response
    return Response(status_code=response.status_code, headers=dict(response.headers))


def version_headers(stored: StoredVersion) -> dict[str, str]:
    return {"ETag": stored.etag, "Last-Modified": stored.http_date}


def render_write(outcome: Outcome, view: Presentation, base: str) -> Response:
    """The response to a create, update, patch or delete, honouring ``Prefer: return=``."""
    stored = outcome.stored
    headers: dict[str, str] = {}
    if stored is not None and not stored.deleted:
        headers.update(version_headers(stored))
        location = f"{base}/{stored.reference}/_history/{stored.version}"
        headers["Location" if outcome.status == 201 else "Content-Location"] = location
    elif stored is not None:
        headers["ETag"] = stored.etag
    message = outcome.message or ("created" if outcome.status == 201 else "done")
    if view.prefer_return == "minimal":
        return Response(status_code=outcome.status, headers=headers)
    if view.prefer_return == "operationoutcome" or stored is None or stored.content is None:
        return render(
            operation_outcome(message, severity="information", code="informational"), outcome.status, view, headers
        )
    return render(stored.content.encode(), outcome.status, view, headers)


def error_response(error: FhirError, view: Presentation | None = None) -> Response:
    return render(error.outcome(), error.status, view, error.headers)
