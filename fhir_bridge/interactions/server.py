"""The FHIR RESTful interactions, independent of HTTP: what each one reads and writes.

The HTTP layer (``api``) and the push paths call these; all writes go through
``Store.write()``. Where the FHIR specification leaves a choice, the behaviour follows HAPI FHIR's
JPA server: an update that changes nothing creates no new version; conditional operations with
several matches answer 412; deleting a resource that others refer to answers 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jsonpatch
import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.searchset import MAX_INCLUDED, run_search
from fhir_bridge.interactions.validation import check_id, check_resource_type, validate_resource
from fhir_bridge.search.query import (
    MAX_CHAIN_DEPTH,
    MAX_OR_VALUES,
    MAX_SEARCH_PARAMETERS,
    Compartment,
    SearchQuery,
    parse_count,
    parse_search,
)
from fhir_bridge.search.values import date_range
from fhir_bridge.store.store import Store, StoredVersion, WriteSession

STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


@dataclass
class Outcome:
    """The result of one interaction: an HTTP status and the version it concerns, if any."""

    status: int
    stored: StoredVersion | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """What one search may ask for (the settings of the same names; the defaults are query.py's)."""

    default_count: int = 20
    max_count: int = 1000
    max_include: int = MAX_INCLUDED
    max_chain_depth: int = MAX_CHAIN_DEPTH
    max_search_parameters: int = MAX_SEARCH_PARAMETERS
    max_or_values: int = MAX_OR_VALUES


def parse_if_match(header: str | None) -> int | None:
    """The version an ``If-Match: W/"n"`` header asks for."""
    if header is None:
        return None
    text = header.strip()
    text = text[2:] if text.startswith("W/") else text
    try:
        return int(text.strip('"'))
    except ValueError:
        raise FhirError(400, f'If-Match {header!r} is not a version ETag like W/"3"', code="invalid") from None


def _without_version_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    copy = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        copy["meta"] = meta
    return copy


def _check_version(current: StoredVersion | None, wanted: int | None, reference: str) -> None:
    if wanted is None:
        return
    if current is None or current.deleted or current.version != wanted:
        have = "no current version" if current is None or current.deleted else f"version {current.version}"
        raise FhirError(412, f"{reference} has {have}, not the version {wanted} that If-Match names", code="conflict")


class FhirServer:
    """The FHIR interactions over one store."""

    def __init__(self, store: Store, signer: CursorSigner, limits: Limits = Limits()) -> None:
        self.store = store
        self.signer = signer
        self.limits = limits

    # criteria -----------------------------------------------------------------------------
    def criteria(self, resource_type: str, query_string: str, what: str) -> SearchQuery:
        """The search of a conditional interaction; unknown parameters are errors here.

        ``Type?a=b`` is taken as ``a=b`` (HAPI FHIR accepts both forms of If-None-Exist).
        """
        if query_string.startswith(f"{resource_type}?"):
            query_string = query_string[len(resource_type) + 1 :]
        parameters = parse_qsl(query_string, keep_blank_values=True)
        if not parameters:
            raise FhirError(400, f"{what} needs search criteria", code="invalid")
        return parse_search(
            resource_type,
            parameters,
            strict=True,
            max_chain_depth=self.limits.max_chain_depth,
            max_parameters=self.limits.max_search_parameters,
            max_or_values=self.limits.max_or_values,
        )

    # reads --------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> StoredVersion:
        check_resource_type(resource_type)
        check_id(resource_id)
        stored = self.store.read(resource_type, resource_id)
        if stored is None:
            raise FhirError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
        if stored.deleted:
            raise FhirError(
                410, f"{resource_type}/{resource_id} was deleted", code="deleted", headers={"ETag": stored.etag}
            )
        return stored

    def vread(self, resource_type: str, resource_id: str, version: str) -> StoredVersion:
        check_resource_type(resource_type)
        check_id(resource_id)
        if not version.isdigit():
            raise FhirError(404, f"{resource_type}/{resource_id} has no version {version!r}", code="not-found")
        stored = self.store.vread(resource_type, resource_id, int(version))
        if stored is None:
            raise FhirError(404, f"{resource_type}/{resource_id} has no version {version}", code="not-found")
        if stored.deleted:
            raise FhirError(410, f"version {version} of {resource_type}/{resource_id} is a deletion", code="deleted")
        return stored

    # single writes, each its own transaction ---------------------------------------------------
    def create(
        self, resource_type: str, resource: dict[str, Any], if_none_exist: str | None = None, *, strict: bool = False
    ) -> Outcome:
        validate_resource(resource, resource_type, strict=strict)
        query = self.criteria(resource_type, if_none_exist, "If-None-Exist") if if_none_exist else None
        with self.store.write() as session:
            return self.create_in(session, resource, query)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        if_match: str | None = None,
        *,
        strict: bool = False,
    ) -> Outcome:
        validate_resource(resource, resource_type, strict=strict)
        check_id(resource_id)
        if resource.get("id") is None:
            raise FhirError(
                400, "an update needs the resource's id in the body", code="required", expression=f"{resource_type}.id"
            )
        if resource["id"] != resource_id:
            raise FhirError(
                400,
                f"the body's id {resource['id']!r} does not match the URL's {resource_id!r}",
                code="invalid",
                expression=f"{resource_type}.id",
            )
        with self.store.write() as session:
            return self.update_in(session, resource, parse_if_match(if_match))

    def conditional_update(
        self,
        resource_type: str,
        query_string: str,
        resource: dict[str, Any],
        if_match: str | None = None,
        *,
        strict: bool = False,
    ) -> Outcome:
        validate_resource(resource, resource_type, strict=strict)
        query = self.criteria(resource_type, query_string, "a conditional update")
        with self.store.write() as session:
            return self.conditional_update_in(session, query, resource, parse_if_match(if_match))

    def patch(self, resource_type: str, resource_id: str, patch: Any, if_match: str | None = None) -> Outcome:
        check_resource_type(resource_type)
        check_id(resource_id)
        with self.store.write() as session:
            current = session.current(resource_type, resource_id)
            return self.patch_in(session, current, f"{resource_type}/{resource_id}", patch, parse_if_match(if_match))

    def conditional_patch(
        self, resource_type: str, query_string: str, patch: Any, if_match: str | None = None
    ) -> Outcome:
        query = self.criteria(resource_type, query_string, "a conditional patch")
        with self.store.write() as session:
            current = self.single_match(session, query, "a conditional patch")
            if current is None:
                raise FhirError(404, "no resource matches the conditional patch's criteria", code="not-found")
            return self.patch_in(session, current, current.reference, patch, parse_if_match(if_match))

    def delete(self, resource_type: str, resource_id: str, if_match: str | None = None) -> Outcome:
        check_resource_type(resource_type)
        check_id(resource_id)
        with self.store.write() as session:
            return self.delete_in(session, resource_type, resource_id, parse_if_match(if_match))

    def conditional_delete(self, resource_type: str, query_string: str) -> Outcome:
        query = self.criteria(resource_type, query_string, "a conditional delete")
        with self.store.write() as session:
            current = self.single_match(session, query, "a conditional delete")
            if current is None:
                return Outcome(200, message="no resource matched the criteria: nothing was deleted")
            return self.delete_in(session, current.res_type, current.res_id, None)

    # the same writes inside a given transaction ------------------------------------------------
    def single_match(self, session: WriteSession, query: SearchQuery, what: str) -> StoredVersion | None:
        matches = session.find(query, limit=2)
        if len(matches) > 1:
            raise FhirError(412, f"{what} matched more than one resource", code="multiple-matches")
        return matches[0] if matches else None

    def create_in(
        self,
        session: WriteSession,
        resource: dict[str, Any],
        if_none_exist: SearchQuery | None = None,
        new_id: str | None = None,
    ) -> Outcome:
        if if_none_exist is not None:
            existing = self.single_match(session, if_none_exist, "If-None-Exist")
            if existing is not None:
                return Outcome(
                    200, existing, message="a resource matching If-None-Exist exists already: nothing was created"
                )
        # ``new_id`` is a fresh server-assigned UUID too (a transaction assigns ids before writing)
        resource["id"] = new_id or str(uuid.uuid4())
        return Outcome(201, session.put(resource, "POST", new=True))

    def update_in(self, session: WriteSession, resource: dict[str, Any], if_match: int | None) -> Outcome:
        current = session.current(resource["resourceType"], resource["id"])
        _check_version(current, if_match, f"{resource['resourceType']}/{resource['id']}")
        unchanged = current is not None and not current.deleted
        if unchanged and _without_version_meta(current.resource or {}) == _without_version_meta(resource):
            return Outcome(200, current, message="the resource is unchanged: no new version was created")
        created = current is None or current.deleted
        return Outcome(201 if created else 200, session.put(resource, "PUT"))

    def conditional_update_in(
        self, session: WriteSession, query: SearchQuery, resource: dict[str, Any], if_match: int | None
    ) -> Outcome:
        current = self.single_match(session, query, "a conditional update")
        if current is None:
            existing = session.current(resource["resourceType"], resource["id"]) if resource.get("id") else None
            if existing is not None and not existing.deleted:
                raise FhirError(
                    400,
                    f"{existing.reference} exists but does not match the conditional update's criteria",
                    code="invalid",
                )
            resource.setdefault("id", str(uuid.uuid4()))
            return self.update_in(session, resource, None)
        if resource.get("id") not in (None, current.res_id):
            raise FhirError(
                400,
                f"the body's id {resource['id']!r} differs from the matching {current.reference}",
                code="invalid",
                expression=f"{resource['resourceType']}.id",
            )
        resource["id"] = current.res_id
        return self.update_in(session, resource, if_match)

    def patch_in(
        self, session: WriteSession, current: StoredVersion | None, reference: str, patch: Any, if_match: int | None
    ) -> Outcome:
        if current is None:
            raise FhirError(404, f"{reference} is not known", code="not-found")
        if current.deleted:
            raise FhirError(410, f"{reference} was deleted", code="deleted")
        _check_version(current, if_match, reference)
        if not isinstance(patch, list):
            raise FhirError(400, "a JSON Patch body is an array of operations", code="invalid")
        try:
            patched = jsonpatch.apply_patch(current.resource, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, ValueError) as error:
            raise FhirError(
                422, f"the JSON Patch cannot be applied to {reference}: {error}", code="processing"
            ) from None
        if patched.get("resourceType") != current.res_type or patched.get("id") != current.res_id:
            raise FhirError(422, "a patch may not change resourceType or id", code="processing")
        validate_resource(patched, current.res_type)
        return self.update_in(session, patched, None)

    def delete_in(self, session: WriteSession, resource_type: str, resource_id: str, if_match: int | None) -> Outcome:
        current = session.current(resource_type, resource_id)
        _check_version(current, if_match, f"{resource_type}/{resource_id}")
        if current is None:
            raise FhirError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
        if current.deleted:
            return Outcome(200, current, message=f"{resource_type}/{resource_id} was already deleted")
        return Outcome(200, session.delete(current), message=f"{resource_type}/{resource_id} was deleted")

    # search and history ----------------------------------------------------------------------
    def search(
        self,
        resource_type: str | None,
        parameters: list[tuple[str, str]],
        base: str,
        strict: bool = False,
        compartment: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """A searchset Bundle; ``compartment`` = (owner type, owner id) for ``Patient/[id]/Type``."""
        if resource_type:
            check_resource_type(resource_type)
        owner = None
        path = None
        if compartment:
            owner = Compartment(*compartment)
            if owner.owner_type != "Patient":
                raise FhirError(
                    400, f"the {owner.owner_type} compartment is not supported (only Patient)", code="not-supported"
                )
            check_id(owner.owner_id)
            path = f"{base}/{owner.owner_type}/{owner.owner_id}/{resource_type or '*'}"
        return run_search(
            self.store,
            self.signer,
            resource_type,
            parameters,
            base,
            strict=strict,
            limits=self.limits,
            compartment=owner,
            path=path,
        )

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        parameters: list[tuple[str, str]],
        base: str,
    ) -> dict[str, Any]:
        if resource_type:
            check_resource_type(resource_type)
        if resource_id:
            check_id(resource_id)
            if self.store.read(resource_type, resource_id) is None:  # type: ignore[arg-type]
                raise FhirError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
        values = dict(parameters)
        count = self.limits.default_count
        if "_count" in values:
            count = parse_count(values["_count"], self.limits.max_count)
        since = _instant(values["_since"], "_since")[0] if "_since" in values else None
        at = _instant(values["_at"], "_at") if "_at" in values else None
        before = int(self.signer.decode(values["_cursor"]).get("seq", 0)) if "_cursor" in values else None
        rows = self.store.history(resource_type, resource_id, since=since, at=at, before_seq=before, count=count + 1)
        has_next = len(rows) > count
        rows = rows[:count]
        path = "/".join(p for p in (base, resource_type, resource_id) if p) + "/_history"
        plain = [(k, v) for k, v in parameters if k != "_cursor"]
        links = [{"relation": "self", "url": _url(path, parameters)}]
        if has_next and rows:
            links.append(
                {
                    "relation": "next",
                    "url": _url(path, [*plain, ("_cursor", self.signer.encode({"seq": rows[-1].seq}))]),
                }
            )
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "history",
            "link": links,
            "entry": [_history_entry(base, row) for row in rows],
        }


def _instant(text: str, parameter: str) -> tuple[int, int]:
    found = date_range(text)
    if found is None:
        raise FhirError(
            400, f"{parameter} must be a FHIR instant or date, not {text!r}", code="invalid", expression=parameter
        )
    return found


def _url(path: str, parameters: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(parameters))
    return f"{path}?{query}" if query else path


def _history_entry(base: str, row: StoredVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{row.reference}"}
    if row.content is not None:
        entry["resource"] = orjson.Fragment(row.content)
    method = row.method or "PUT"
    entry["request"] = {"method": method, "url": row.res_type if method == "POST" else row.reference}
    status = 204 if row.deleted else 201 if row.version == 1 else 200
    entry["response"] = {"status": STATUS_TEXT[status], "etag": row.etag, "lastModified": row.last_modified}
    return entry
