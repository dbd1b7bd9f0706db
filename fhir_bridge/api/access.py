"""Access control and audit for every request: an ASGI middleware in front of all routes.

For each request it (1) finds what the path is (public, FHIR REST, DICOM push, clinical push,
bulk export, catalogue counts), (2) verifies the bearer token and checks its scopes against
what the request needs (401/403 as OperationOutcome), and (3) writes the audit record before
the first byte of the response leaves, so a request whose outcome was sent is always in the
trail, failures included. Routes whose needs are in their body (Bundles, form searches, exports,
clinical mappings) check them with ``require``.

Being middleware, it covers every route of this app, those added later included: a path it does
not know needs read and search on every type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_bridge.api.context import base_url, services
from fhir_bridge.audit.log import AuditEntry, AuditLog, now_us, redact_detail, redact_query
from fhir_bridge.errors import FhirError, operation_outcome
from fhir_bridge.security.policy import (
    DICOM_PUSH_TYPES,
    EVERYTHING,
    FEDERATED_SEARCH,
    METRICS,
    counts_needs,
    rest_needs,
    writes,
)
from fhir_bridge.security.scopes import Permission
from fhir_bridge.security.tokens import IssuerUnavailable, Principal, TokenRejected, TokenVerifier
from fhir_bridge.settings import Settings

log = logging.getLogger("fhir_bridge.access")
AUTH_PATHS = ("/.well-known/smart-configuration", "/auth/token", "/auth/jwks")
UI = "/ui"  # the web UI (fhir_bridge.ui): session login, every page's reads checked and audited there
EUCAIM = "/eucaim"  # federated search (api/eucaim.py): counts need FEDERATED_SEARCH, the Beacon's self-description none
EUCAIM_BEACON = f"{EUCAIM}/beacon"
EUCAIM_PUBLIC = frozenset(
    {EUCAIM_BEACON}
    | {
        f"{EUCAIM_BEACON}/{p}"
        for p in ("info", "service-info", "configuration", "map", "entry_types", "filtering_terms")
    }
)
PUBLIC_PATHS = (
    frozenset({"/catalogue", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/healthz", "/readyz"})
    | EUCAIM_PUBLIC
)
ACTIONS = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
}


@dataclass
class Classified:
    """What a request is: its audit interaction and entity, and what it needs (None: public)."""

    needs: set[Permission] | None
    interaction: str = "operation"
    entity: str | None = None
    entity_type: str | None = None
    audited_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    criteria: list[tuple[str, str]] = field(default_factory=list)  # If-None-Exist: the search a create ran


class AccessControl:
    """The middleware. ``verifier`` is None when the operator switched access control off."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        verifier: TokenVerifier | None,
        audit: AuditLog,
        keyed_hash: Callable[[str], str] | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.verifier = verifier
        self.audit = audit
        self.keyed_hash = keyed_hash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        parameters = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = _headers(scope)
        classified = classify(
            self.settings, scope["method"], path, parameters, headers, authorising=self.verifier is not None
        )
        if classified.needs is None:
            await self.app(scope, receive, send)
            return
        trail = _Trail(self, scope, classified, parameters)
        self.audit.expect()  # this request's record will come: the writer may wait for it (audit.commit)
        trail.announced = True
        try:
            await self._handle(scope, receive, send, headers, classified.needs, trail)
        finally:
            if trail.announced:  # it failed before its record was handed over
                trail.announced = False
                self.audit.withdraw()

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], needs: set[Permission], trail: _Trail
    ) -> None:
        principal: Principal | None = None
        if self.verifier is not None:
            try:
                principal = self._authenticate(scope, headers)
                trail.client_id = principal.client_id
                _check(principal, needs)
            except FhirError as error:
                trail.client_id = trail.client_id or _claimed_client(headers)
                await trail.refuse(error, send)
                return
            trail.client_id = principal.client_id
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["audit"] = trail.classified.extra
        await trail.run(receive, send)

    def _authenticate(self, scope: Scope, headers: dict[str, str]) -> Principal:
        assert self.verifier is not None
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise FhirError(
                401,
                "this request needs an OAuth 2.0 bearer token (Authorization: Bearer ...); "
                "see .well-known/smart-configuration for where to get one",
                code="login",
                headers={"WWW-Authenticate": 'Bearer realm="fhir-bridge"'},
            )
        try:
            return self.verifier.verify(token.strip(), base_url(self.settings, scope))
        except TokenRejected as error:
            raise FhirError(
                401,
                str(error),
                code="login",
                headers={"WWW-Authenticate": 'Bearer realm="fhir-bridge", error="invalid_token"'},
            ) from None
        except IssuerUnavailable as error:
            raise FhirError(503, str(error), code="transient", headers={"Retry-After": "5"}) from None


class _Trail:
    """One request's audit record: filled in as the request runs, written before its response leaves."""

    def __init__(
        self, access: AccessControl, scope: Scope, classified: Classified, parameters: list[tuple[str, str]]
    ) -> None:
        self.access = access
        self.scope = scope
        self.classified = classified
        self.parameters = parameters
        self.client_id: str | None = None
        self.written = False
        self.announced = False  # told the trail's writer this record will come, and not handed it over yet

    async def run(self, receive: Receive, send: Send) -> None:
        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not self.written:
                named = {k.lower(): v for k, v in message.get("headers", []) if k.lower() in _LOCATIONS}
                location = named.get(b"location") or named.get(b"content-location")
                await self._write(message["status"], location.decode("latin-1") if location else None)
            await send(message)

        try:
            await self.access.app(self.scope, receive, audited_send)
        except BaseException:
            if not self.written:
                await self._write(500, None, "the request failed before it was answered")
            raise

    async def refuse(self, error: FhirError, send: Send) -> None:
        await self._write(error.status, None, error.diagnostics)
        body = orjson.dumps(operation_outcome(error.diagnostics, code=error.code))
        headers = [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _write(self, status: int, location: str | None, detail: str | None = None) -> None:
        """Write the record; if the trail cannot be written, the request fails (500) rather than go unrecorded."""
        self.written = True
        classified = self.classified
        entity = classified.entity
        if location and not entity:
            entity = _reference(location)
        extra = classified.extra
        client = self.scope.get("client")
        searched = [*self.parameters, *extra.get("search", ()), *classified.criteria]
        recorded, address, keyed_hash = now_us(), client[0] if client else None, self.access.keyed_hash
        entries = [
            AuditEntry(
                recorded=recorded,
                client_id=self.client_id,
                interaction=extra.get("interaction", classified.interaction),
                action=ACTIONS.get(extra.get("interaction", classified.interaction), "E"),
                method=self.scope["method"],
                path=classified.audited_path,
                query=redact_query(searched, keyed_hash),
                entity=entity,
                entity_type=classified.entity_type or (entity.split("/")[0] if entity else None),
                status=status,
                detail=redact_detail(detail or extra.get("detail"), keyed_hash),
                address=address,
            )
        ]
        for part in extra.get("entries", ()):  # a batch or transaction: one record per entry, after the Bundle's
            entries.append(
                AuditEntry(
                    recorded=recorded,
                    client_id=self.client_id,
                    interaction=part.interaction,
                    action=ACTIONS.get(part.interaction, "E"),
                    method=part.method,
                    path=part.path,
                    query=redact_query(part.query, keyed_hash),
                    entity=part.entity,
                    entity_type=part.entity_type,
                    status=part.status,
                    detail=redact_detail(part.detail, keyed_hash),
                    address=address,
                )
            )
        announced, self.announced = self.announced, False
        await self.access.audit.record_async(entries, announced=announced)


def require(request: Request, needs: set[Permission]) -> None:
    """403 unless the caller's token grants ``needs`` (no-op when access control is off)."""
    principal = request.scope.get("state", {}).get("principal")
    if principal is not None:
        _check(principal, needs)


def principal_of(request: Request) -> Principal | None:
    return request.scope.get("state", {}).get("principal")


def audit_search(request: Request, parameters: list[tuple[str, str]]) -> None:
    """Record search parameters the route read from the body (POST _search) with the request's query."""
    request.scope.setdefault("state", {}).setdefault("audit", {})["search"] = parameters


@dataclass(frozen=True)
class EntryRecord:
    """What one entry of a batch or transaction Bundle did, for its own audit record."""

    method: str
    path: str  # the FHIR path it acted on, e.g. /fhir/Patient/123
    query: list[tuple[str, str]]  # its search or conditional criteria (personal values hashed when written)
    interaction: str
    entity: str | None
    entity_type: str | None
    status: int
    detail: str


def audit_bundle_entries(request: Request, body: Any, answer: dict[str, Any] | None, failure: FhirError | None) -> None:
    """Record each entry of a batch or transaction Bundle: its action, type, id and outcome.

    ``answer``: the response Bundle (entries in the request's order); ``failure``: why a transaction
    was refused as a whole (each entry is then recorded with that status: none of them was applied).
    """
    if not isinstance(body, dict) or body.get("type") not in ("batch", "transaction"):
        return
    kind = body["type"]
    fhir = services(request).settings.fhir_path.rstrip("/")
    answered = (answer or {}).get("entry") or []
    records = []
    for index, raw in enumerate(body.get("entry") or []):
        call = raw.get("request") if isinstance(raw, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("url"), str):
            continue
        method = str(call.get("method") or "").upper()
        path, _, query = call["url"].partition("?")
        segments = [s for s in path.split("/") if s]
        start = next((i for i, s in enumerate(segments) if s[:1].isupper() or s.startswith(("$", "_"))), len(segments))
        segments = segments[start:]
        interaction, entity = _interaction(method, segments)
        criteria = parse_qsl(query, keep_blank_values=True)
        if if_none_exist := call.get("ifNoneExist"):
            criteria += parse_qsl(str(if_none_exist).partition("?")[2] or str(if_none_exist), keep_blank_values=True)
        response = answered[index].get("response", {}) if index < len(answered) else {}
        if failure is not None:  # none was applied; the one the failure names says why
            status, named = failure.status, f"Bundle.entry[{index}]"
            reason = failure.diagnostics.removeprefix(named).lstrip(" :.")
            why = f"the {kind} failed here: {reason}" if failure.diagnostics.startswith(named) else f"the {kind} failed"
            detail = f"{named} of a {kind}: not applied, {why}"
        else:
            status = int(str(response.get("status", "0")).split(" ")[0] or 0)
            detail = f"Bundle.entry[{index}] of a {kind}"
            issues = (response.get("outcome") or {}).get("issue") or []
            if status >= 400 and issues:
                detail += f": {issues[0].get('diagnostics', '')}"
        if entity is None and response.get("location"):
            entity = _reference(str(response["location"]))
        entity_type = segments[0] if segments and segments[0][:1].isupper() else None
        records.append(
            EntryRecord(
                method, f"{fhir}/{'/'.join(segments)}", criteria, interaction, entity, entity_type, status, detail
            )
        )
    request.scope.setdefault("state", {}).setdefault("audit", {})["entries"] = records


def annotate(request: Request, **facts: str) -> None:
    """Add what only the route knows (the Bundle's type, a failure's reason) to the request's audit record."""
    request.scope.setdefault("state", {}).setdefault("audit", {}).update(facts)


def _check(principal: Principal, needs: set[Permission]) -> None:
    missing = principal.grant.missing(needs)
    if missing:
        raise FhirError(
            403,
            f"the token of {principal.client_id} lacks the scopes "
            f"{', '.join(p.scope() for p in missing)} that this request needs",
            code="forbidden",
        )


def classify(
    settings: Settings,
    method: str,
    path: str,
    parameters: list[tuple[str, str]],
    headers: dict[str, str],
    *,
    authorising: bool = True,
) -> Classified:
    """What a request is, from its method and path inside this app (see the module docstring).

    Without ``authorising`` (access control off) the needs of FHIR requests are not worked out:
    only the audit facts are.
    """
    fhir = settings.fhir_path.rstrip("/")
    if path in PUBLIC_PATHS or path.rstrip("/") in _open_paths(fhir) or (path == "/" and fhir):
        return Classified(None)
    if path == "/metrics" and settings.metrics != "off":
        return Classified(None) if settings.metrics == "open" else Classified({METRICS}, "operation", None, None, path)
    if path == UI or path.startswith(f"{UI}/"):
        return Classified(None)  # the web UI authenticates its session and audits each read itself (ui.viewer)
    if path.rstrip("/") == "/catalogue/counts":
        return Classified(counts_needs(parameters), "search-system", None, None, path)
    if path == EUCAIM or path.startswith(f"{EUCAIM}/"):
        return Classified({FEDERATED_SEARCH}, "search-system", None, None, path)
    dicomweb = settings.dicomweb_path.rstrip("/")
    if dicomweb and (path == dicomweb or path.startswith(f"{dicomweb}/")):
        needs = writes(DICOM_PUSH_TYPES) if method == "POST" else set(EVERYTHING)
        # the study UID in a STOW path is not kept: with UID remapping it would undo the pseudonymisation
        return Classified(needs, "create", None, "ImagingStudy", f"{dicomweb}/studies")
    if path == "/ingest" or path.startswith("/ingest/"):
        return Classified(set(), "create", None, None, path)  # the mapping's types: checked by the route
    if path == fhir or path.startswith(f"{fhir}/"):
        segments = [s for s in path[len(fhir) :].split("/") if s]
        return _classify_fhir(method, segments, parameters, headers, path, authorising)
    return Classified(set(EVERYTHING), "operation", None, None, path)


@lru_cache(maxsize=8)
def _open_paths(fhir: str) -> frozenset[str]:
    """Paths (without a trailing slash) that need no token: the CapabilityStatement and the
    authorisation server's own, at the root and under the FHIR base."""
    return frozenset({f"{fhir}/metadata", *AUTH_PATHS, *(f"{fhir}{p}" for p in AUTH_PATHS)})


def _classify_fhir(
    method: str,
    segments: list[str],
    parameters: list[tuple[str, str]],
    headers: dict[str, str],
    path: str,
    authorising: bool,
) -> Classified:
    if segments and (segments[-1] == "$export" or segments[0] in ("$export-status", "$export-file")):
        return Classified(set(), "operation", None, None, path)  # the exported types: checked by the route
    needs = (
        rest_needs(method, segments, parameters, if_none_exist=headers.get("if-none-exist")) if authorising else set()
    )
    if len(segments) == 3 and segments[0] == "Patient" and segments[2] == "$erase":
        # the erased patient's id is not kept: the route records it as a keyed hash (interactions.erasure)
        return Classified(needs, "delete", None, "Patient", path.replace(f"/{segments[1]}/", "/", 1))
    interaction, entity = _interaction(method, segments)
    entity_type = segments[0] if segments and segments[0][:1].isupper() else None
    criteria = parse_qsl(headers.get("if-none-exist", "").partition("?")[2] or headers.get("if-none-exist", ""))
    return Classified(needs, interaction, entity, entity_type, path, criteria=criteria)


def _interaction(method: str, segments: list[str]) -> tuple[str, str | None]:
    """The FHIR restful-interaction code of a request, and the resource it names."""
    method = method.upper()
    count = len(segments)
    if any(segment.startswith("$") for segment in segments):  # an operation, on the resource it names
        named = count >= 3 and segments[0][:1].isupper() and not segments[1].startswith("$")
        return "operation", f"{segments[0]}/{segments[1]}" if named else None
    if count == 0:
        return ("search-system" if method in ("GET", "HEAD") else "transaction"), None
    if count == 1:
        if segments[0] == "_search":
            return "search-system", None
        if segments[0] == "_history":
            return "history-system", None
        return {
            "GET": "search-type",
            "HEAD": "search-type",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "operation"), None
    kind = segments[0]
    if count == 2:
        if segments[1] == "_search":
            return "search-type", None
        if segments[1] == "_history":
            return "history-type", None
        entity = f"{kind}/{segments[1]}"
        return {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "operation"
        ), entity
    entity = f"{kind}/{segments[1]}"
    if segments[2] == "_history":
        return ("history-instance" if count == 3 else "vread"), entity
    return "search-type", entity  # compartment search


def _reference(location: str) -> str | None:
    """``Type/id`` of a Location header (``[base]/Type/id/_history/n``)."""
    parts = location.split("/_history")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    return None


_LOCATIONS = (b"location", b"content-location")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _claimed_client(headers: dict[str, str]) -> str | None:
    """The client a refused token claims to be (unverified, for the trail only), or None."""
    token = headers.get("authorization", "").partition(" ")[2].strip()
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    claimed = claims.get("client_id") or claims.get("azp") or claims.get("sub")
    return f"unverified:{claimed}"[:128] if isinstance(claimed, str) else None
