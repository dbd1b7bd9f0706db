"""The FHIR RESTful interactions, independent of HTTP: what the API, the CLI and the listeners call.

Reads, search and history run on the store's readers. Each single write opens one
``Transaction`` (``writes.py``, the one write path); Bundles and ingests open one and make many
writes in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.history import history_bundle
from fhir_bridge.interactions.limits import Limits
from fhir_bridge.interactions.patching import Patch
from fhir_bridge.interactions.searchset import run_search
from fhir_bridge.interactions.writes import Guard, Outcome, Transaction, parse_criteria, parse_if_match
from fhir_bridge.search.query import Compartment, SearchQuery
from fhir_bridge.spec.registry import resource_types
from fhir_bridge.spec.validation import check_id, validate_resource
from fhir_bridge.store.store import Store
from fhir_bridge.store.versions import StoredVersion


class _DryRun(Exception):
    """Ends a dry run: its transaction is rolled back."""


def check_type_in_url(resource_type: str) -> None:
    """A URL naming no R4 resource type names nothing: 404 (http.html, "resource type not supported")."""
    if resource_type not in resource_types():
        raise FhirError(404, f"unknown resource type {resource_type!r}", code="not-supported")


class FhirInteractions:
    """The FHIR interactions over one store."""

    def __init__(
        self, store: Store, signer: CursorSigner, limits: Limits = Limits(), rest_guard: Guard | None = None
    ) -> None:
        self.store = store
        self.signer = signer
        self.limits = limits
        self.rest_guard = rest_guard  # checks what REST clients write (the ingest paths de-identify themselves)

    @contextmanager
    def transaction(self, *, rest: bool = False) -> Iterator[Transaction]:
        """An atomic write transaction: everything written in it commits together or not at all.

        ``rest``: the writes come from a REST client as sent, and pass ``rest_guard`` when one is set."""
        with self.store.write() as session:
            yield Transaction(session, self.limits, self.rest_guard if rest else None)

    @contextmanager
    def dry_run(self) -> Iterator[Transaction]:
        """A write transaction that makes every check a commit makes (references included), then rolls
        back: what ``$validate`` with a mode uses to say whether a write would succeed."""
        try:
            with self.store.write() as session:
                yield Transaction(session, self.limits)
                session.finish()
                raise _DryRun
        except _DryRun:
            pass

    def criteria(self, resource_type: str, query_string: str, what: str) -> SearchQuery:
        """The search of a conditional interaction; unknown parameters are errors here."""
        return parse_criteria(resource_type, query_string, what, self.limits)

    # reads --------------------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> StoredVersion:
        check_type_in_url(resource_type)
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
        check_type_in_url(resource_type)
        check_id(resource_id)
        if not version.isdigit():
            raise FhirError(404, f"{resource_type}/{resource_id} has no version {version!r}", code="not-found")
        stored = self.store.vread(resource_type, resource_id, int(version))
        if stored is None:
            raise FhirError(404, f"{resource_type}/{resource_id} has no version {version}", code="not-found")
        if stored.deleted:
            raise FhirError(410, f"version {version} of {resource_type}/{resource_id} is a deletion", code="deleted")
        return stored

    # single writes, each its own transaction -----------------------------------------------------------
    def create(
        self, resource_type: str, resource: dict[str, Any], if_none_exist: str | None = None, *, strict: bool = False
    ) -> Outcome:
        """``strict`` (Prefer: handling=strict): the validator's warnings refuse too."""
        check_type_in_url(resource_type)
        validate_resource(resource, resource_type, strict=strict)
        query = self.criteria(resource_type, if_none_exist, "If-None-Exist") if if_none_exist else None
        with self.transaction(rest=True) as transaction:
            return transaction.create(resource, query)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        if_match: str | None = None,
        *,
        strict: bool = False,
    ) -> Outcome:
        check_type_in_url(resource_type)
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
        with self.transaction(rest=True) as transaction:
            return transaction.update(resource, parse_if_match(if_match))

    def conditional_update(
        self,
        resource_type: str,
        query_string: str,
        resource: dict[str, Any],
        if_match: str | None = None,
        *,
        strict: bool = False,
    ) -> Outcome:
        check_type_in_url(resource_type)
        validate_resource(resource, resource_type, strict=strict)
        query = self.criteria(resource_type, query_string, "a conditional update")
        with self.transaction(rest=True) as transaction:
            return transaction.conditional_update(query, resource, parse_if_match(if_match))

    def patch(self, resource_type: str, resource_id: str, patch: Patch, if_match: str | None = None) -> Outcome:
        check_type_in_url(resource_type)
        check_id(resource_id)
        with self.transaction(rest=True) as transaction:
            current = transaction.current(resource_type, resource_id)
            return transaction.patch(current, f"{resource_type}/{resource_id}", patch, parse_if_match(if_match))

    def conditional_patch(
        self, resource_type: str, query_string: str, patch: Patch, if_match: str | None = None
    ) -> Outcome:
        check_type_in_url(resource_type)
        query = self.criteria(resource_type, query_string, "a conditional patch")
        with self.transaction(rest=True) as transaction:
            current = transaction.single_match(query, "a conditional patch")
            if current is None:
                raise FhirError(404, "no resource matches the conditional patch's criteria", code="not-found")
            return transaction.patch(current, current.reference, patch, parse_if_match(if_match))

    def delete(self, resource_type: str, resource_id: str, if_match: str | None = None) -> Outcome:
        check_type_in_url(resource_type)
        check_id(resource_id)
        with self.transaction() as transaction:
            return transaction.delete(resource_type, resource_id, parse_if_match(if_match))

    def conditional_delete(self, resource_type: str, query_string: str) -> Outcome:
        check_type_in_url(resource_type)
        query = self.criteria(resource_type, query_string, "a conditional delete")
        with self.transaction() as transaction:
            current = transaction.single_match(query, "a conditional delete")
            if current is None:
                return Outcome(200, message="no resource matched the criteria: nothing was deleted")
            return transaction.delete(current.res_type, current.res_id)

    # search and history -------------------------------------------------------------------------------
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
            check_type_in_url(resource_type)
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
            check_type_in_url(resource_type)
        if resource_id:
            check_id(resource_id)
            if resource_type is None or self.store.read(resource_type, resource_id) is None:
                raise FhirError(404, f"{resource_type}/{resource_id} is not known", code="not-found")
        return history_bundle(self.store, self.signer, self.limits, resource_type, resource_id, parameters, base)
