"""The one write path: create, update, patch and delete inside one atomic transaction.

Every push path ends here: the REST API and Bundles, DICOM ingest (STOW-RS, folders, C-STORE)
and clinical ingest open a ``Transaction`` (``FhirInteractions.transaction()``) and write through
it. Where the FHIR specification leaves a choice, the behaviour follows HAPI FHIR's JPA server:
an update that changes nothing makes no new version (decided in ``Transaction.update`` and
nowhere else); conditional operations with several matches answer 412; deleting a resource that
others refer to answers 409 (see the store).

Validation happens before a transaction opens (it is the expensive part of a write, and the
transaction holds the store's commit lock); what is written here has been validated by the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.limits import Limits
from fhir_bridge.interactions.patching import Patch, apply_patch
from fhir_bridge.privacy.fhir import direct_identifiers
from fhir_bridge.search.query import SearchQuery, parse_search
from fhir_bridge.search.runner import find_in_session
from fhir_bridge.spec.validation import validate_resource
from fhir_bridge.store.store import WriteSession
from fhir_bridge.store.versions import StoredVersion, format_instant, same_content

STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


class _Unread:
    """Marks a current version the caller has not read: the transaction reads it."""


UNREAD: Final = _Unread()


@dataclass
class Outcome:
    """The result of one interaction: an HTTP status, the version it concerns, and whether one was written."""

    status: int
    stored: StoredVersion | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    changed: bool = False


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


def parse_criteria(resource_type: str, query_string: str, what: str, limits: Limits) -> SearchQuery:
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
        max_chain_depth=limits.max_chain_depth,
        max_parameters=limits.max_search_parameters,
        max_or_values=limits.max_or_values,
    )


def _check_version(current: StoredVersion | None, wanted: int | None, reference: str) -> None:
    if wanted is None:
        return
    if current is None or current.deleted or current.version != wanted:
        have = "no current version" if current is None or current.deleted else f"version {current.version}"
        raise FhirError(412, f"{reference} has {have}, not the version {wanted} that If-Match names", code="conflict")


Guard = Callable[[dict[str, Any]], None]  # raises FhirError for a resource a transaction must not write


def refuse_direct_identifiers(resource: dict[str, Any]) -> None:
    """The REST guard of ``FHIR_BRIDGE_REFUSE_IDENTIFIED_PATIENTS``: a Patient (also a contained one) that
    still carries direct identifiers is refused, naming them."""
    found = direct_identifiers(resource)
    if found:
        raise FhirError(
            422,
            "this server stores only pseudonymised Patient data over the REST API, and this write carries direct "
            f"identifiers ({', '.join(found)}): remove them, or push identifiable FHIR to /ingest/fhir, which "
            "pseudonymises it",
            code="security",
            expression=found,
        )


class Transaction:
    """One atomic write transaction of FHIR interactions (see the module docstring).

    ``guard`` (REST writes, when the site sets one) checks every resource written by create, update or patch."""

    def __init__(self, session: WriteSession, limits: Limits, guard: Guard | None = None) -> None:
        self._session = session
        self.limits = limits
        self.guard = guard

    # what the transaction sees --------------------------------------------------------------------
    @property
    def recorded(self) -> str:
        """The transaction's time as a FHIR instant (every version it writes gets it as lastUpdated)."""
        return format_instant(self._session.now)

    @property
    def last_seq(self) -> int:
        return self._session.last_seq

    def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The current version (a deletion included) as this transaction sees it."""
        return self._session.current(resource_type, resource_id)

    def live(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current content, or None when there is none or it was deleted."""
        current = self._session.current(resource_type, resource_id)
        return current.resource if current is not None and not current.deleted else None

    def criteria(self, resource_type: str, query_string: str, what: str) -> SearchQuery:
        return parse_criteria(resource_type, query_string, what, self.limits)

    def find(self, query: SearchQuery, limit: int = 2) -> list[StoredVersion]:
        """Current resources matching ``query`` as this transaction sees them."""
        return find_in_session(self._session, query, limit)

    def single_match(self, query: SearchQuery, what: str) -> StoredVersion | None:
        matches = find_in_session(self._session, query, limit=2)
        if len(matches) > 1:
            raise FhirError(412, f"{what} matched more than one resource", code="multiple-matches")
        return matches[0] if matches else None

    # writes -------------------------------------------------------------------------------------------
    def create(
        self, resource: dict[str, Any], if_none_exist: SearchQuery | None = None, new_id: str | None = None
    ) -> Outcome:
        """Create ``resource`` under a new server-assigned id (``new_id``, else a fresh UUID)."""
        if if_none_exist is not None:
            existing = self.single_match(if_none_exist, "If-None-Exist")
            if existing is not None:
                return Outcome(
                    200, existing, message="a resource matching If-None-Exist exists already: nothing was created"
                )
        if self.guard is not None:
            self.guard(resource)
        resource["id"] = new_id or str(uuid.uuid4())
        return Outcome(201, self._session.put(resource, "POST", None), changed=True)

    def update(
        self,
        resource: dict[str, Any],
        if_match: int | None = None,
        current: StoredVersion | _Unread | None = UNREAD,
    ) -> Outcome:
        """Store ``resource`` (with its id) as the next version; no new version when nothing changed.

        ``current`` lets a batched caller pass what it read for many resources at once; None then
        promises that the id was never used (the insert fails, and the transaction with it, if it was).
        """
        if self.guard is not None:
            self.guard(resource)
        resource_type, resource_id = resource["resourceType"], resource["id"]
        if isinstance(current, _Unread):
            current = self._session.current(resource_type, resource_id)
        _check_version(current, if_match, f"{resource_type}/{resource_id}")
        if current is not None and not current.deleted and same_content(current.resource, resource):
            return Outcome(200, current, message="the resource is unchanged: no new version was created")
        created = current is None or current.deleted
        return Outcome(201 if created else 200, self._session.put(resource, "PUT", current), changed=True)

    def conditional_update(self, query: SearchQuery, resource: dict[str, Any], if_match: int | None) -> Outcome:
        current = self.single_match(query, "a conditional update")
        if current is None:
            existing = self._session.current(resource["resourceType"], resource["id"]) if resource.get("id") else None
            if existing is not None and not existing.deleted:
                raise FhirError(
                    400,
                    f"{existing.reference} exists but does not match the conditional update's criteria",
                    code="invalid",
                )
            resource.setdefault("id", str(uuid.uuid4()))
            return self.update(resource, None, existing)
        if resource.get("id") not in (None, current.res_id):
            raise FhirError(
                400,
                f"the body's id {resource['id']!r} differs from the matching {current.reference}",
                code="invalid",
                expression=f"{resource['resourceType']}.id",
            )
        resource["id"] = current.res_id
        return self.update(resource, if_match, current)

    def patch(self, current: StoredVersion | None, reference: str, patch: Patch, if_match: int | None) -> Outcome:
        """Apply ``patch`` (JSON Patch, JSON Merge Patch or FHIRPath Patch: ``interactions.patching``) to
        ``current`` (found by id or by criteria) and store the result."""
        if current is None:
            raise FhirError(404, f"{reference} is not known", code="not-found")
        if current.deleted:
            raise FhirError(410, f"{reference} was deleted", code="deleted")
        _check_version(current, if_match, reference)
        patched = apply_patch(current.resource or {}, patch, reference)
        if patched.get("resourceType") != current.res_type or patched.get("id") != current.res_id:
            raise FhirError(422, "a patch may not change resourceType or id", code="processing")
        validate_resource(patched, current.res_type)
        return self.update(patched, None, current)

    def delete(self, resource_type: str, resource_id: str, if_match: int | None = None) -> Outcome:
        current = self._session.current(resource_type, resource_id)
        _check_version(current, if_match, f"{resource_type}/{resource_id}")
        if current is None:
            raise FhirError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
        if current.deleted:
            return Outcome(200, current, message=f"{resource_type}/{resource_id} was already deleted")
        deleted = self._session.delete(current)
        return Outcome(200, deleted, message=f"{resource_type}/{resource_id} was deleted", changed=True)
