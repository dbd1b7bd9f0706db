"""Request body limits: a size per media type (413) and an idle timeout while the body streams in (408).

A pure ASGI middleware: it wraps ``receive`` and never buffers, so the routes that stream their
bodies (STOW-RS, clinical ingest) are limited as they read. A declared ``Content-Length`` beyond
the limit is answered at once, before the app runs and before the client sends the body (it also
gets no ``100 Continue``); a chunked or otherwise undeclared body is counted while it streams and
refused at the first chunk over the limit. Whatever the app answers after that (it sees the error
raised by ``receive``) is replaced by the 413 or 408 OperationOutcome, which closes the connection
(the rest of the body is not read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette

from fhir_bridge.api.media_types import essence
from fhir_bridge.api.rendering import error_response
from fhir_bridge.errors import FhirError
from fhir_bridge.settings import Settings

log = logging.getLogger("fhir_bridge")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FHIR_JSON_TYPES = frozenset(
    {
        "application/fhir+json",
        "application/json",
        "application/json+fhir",
        "application/json-patch+json",
        "application/x-www-form-urlencoded",  # POST _search
    }
)
MULTIPART_TYPES = frozenset({"multipart/related"})
DICOM_TYPES = frozenset({"application/dicom"})
CLINICAL_TYPES = frozenset(  # the built-in clinical readers' media types, application/json excepted
    {
        "text/csv",
        "application/csv",
        "text/tab-separated-values",
        "application/x-ndjson",
        "application/ndjson",
        "application/fhir+ndjson",
        "application/jsonl",
        "x-application/hl7-v2+er7",
        "application/hl7-v2",
        "application/edi-hl7v2",
    }
)


# The token endpoint is public: an anonymous client must not make the server read and parse a large
# form. A token request (grant type, assertion type, a signed JWT, scopes) fits in a few KiB.
TOKEN_REQUEST_BYTES = 16 * 1024
PATH_LIMITS = {"/auth/token": TOKEN_REQUEST_BYTES}  # by the end of the path (the FHIR base may be anywhere)


_BODILESS = frozenset({"GET", "HEAD"})  # requests whose bodies no route reads: unguarded when they declare none


class BodyLimitError(FhirError):
    """Raised by the wrapped ``receive``: the body is too large (413) or stalled (408)."""


@dataclass(frozen=True)
class BodyLimits:
    """The largest body per media type (lower case, no parameters), and the default for the others."""

    default: int
    by_type: dict[str, int] = field(default_factory=dict)
    idle_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        default = settings.max_body_bytes
        groups = (
            (FHIR_JSON_TYPES, settings.max_body_bytes_fhir_json),
            (MULTIPART_TYPES, settings.max_body_bytes_multipart),
            (DICOM_TYPES, settings.max_body_bytes_dicom),
            (CLINICAL_TYPES, settings.max_body_bytes_clinical),
        )
        by_type = {media: limit or default for types, limit in groups for media in types}
        return cls(default, by_type, settings.body_timeout_s)

    def limit_for(self, content_type: str | None, path: str = "") -> int:
        limit = self.by_type.get(essence(content_type), self.default)
        for suffix, path_limit in PATH_LIMITS.items():
            if path.rstrip("/").endswith(suffix):
                return min(limit, path_limit)
        return limit


def too_large(limit: int, content_type: str | None) -> BodyLimitError:
    media = essence(content_type) or "a body without Content-Type"
    return BodyLimitError(
        413,
        f"the request body is larger than the {limit} bytes this server accepts for {media}",
        code="too-long",
        headers={"Connection": "close"},
    )


def stalled(timeout_s: float, received: int) -> BodyLimitError:
    return BodyLimitError(
        408,
        f"the client sent no part of the request body for {timeout_s:g} s (after {received} bytes); "
        "nothing of it was processed",
        code="timeout",
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    """Enforce ``BodyLimits`` on every HTTP request of the wrapped app."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            error = FhirError(400, "the URL holds a NUL character (%00), which no FHIR id or value can", code="invalid")
            await self._answer(error, scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        declared = headers.get(b"content-length", b"").strip()
        if scope["method"] in _BODILESS and not declared and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (RFC 9112 6.3), and no route of these reads one
            return
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        limit = self.limits.limit_for(content_type, scope.get("path", ""))
        if declared.isdigit() and int(declared) > limit:
            await self._answer(too_large(limit, content_type), scope, receive, send)
            return
        await _Guard(self.app, self.limits.idle_timeout_s, limit, content_type).run(scope, receive, send)

    @staticmethod
    async def _answer(error: FhirError, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(error)(scope, receive, send)


class _Guard:
    """One request: counts its body bytes, times the waits for them, and answers for the app if it trips."""

    def __init__(self, app: ASGIApp, timeout_s: float, limit: int, content_type: str) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.limit = limit
        self.content_type = content_type
        self.received = 0
        self.body_complete = False
        self.tripped: BodyLimitError | None = None
        self.started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.tripped is not None:  # the app asks again after the error: it gets nothing more
                raise self.tripped
            if self.body_complete:  # waiting for a disconnect (streaming responses do): no timeout
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                self.tripped = stalled(self.timeout_s, self.received)
                raise self.tripped from None
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.tripped = too_large(self.limit, self.content_type)
                    raise self.tripped
                self.body_complete = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if self.tripped is not None:
                if message["type"] == "http.response.start" and not self.started:
                    self.started = True
                    await error_response(self.tripped)(scope, receive, send)
                return  # whatever the app answers instead is dropped
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception as error:
            if self.tripped is None:
                raise
            if error is not self.tripped:  # the app turned the error into another one: it is answered all the same
                log.debug("%s after a request body limit was reached", type(error).__name__)
        if self.tripped is not None and not self.started:
            self.started = True
            await error_response(self.tripped)(scope, receive, send)


def install(app: Starlette, settings: Settings) -> None:
    """Put the body limits in front of every route of ``app``."""
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits.from_settings(settings))
