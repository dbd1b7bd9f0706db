"""Who is looking, and every read a page makes on their behalf: authorised as their search, audited.

Each search or read a page runs is checked against the viewer's SMART scopes exactly as the FHIR
REST routes check it (``security.policy``: ``s`` on the searched type and the types chains reach,
``r`` on included types), and written to the audit trail with the viewer's client id, the page
and the query: the trail answers "who looked at what" for the UI as it does for the API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Row

from fhir_bridge.audit.events import search_conditions
from fhir_bridge.audit.log import AuditEntry, now_us, redact_query
from fhir_bridge.errors import FhirError
from fhir_bridge.security.policy import search_needs
from fhir_bridge.security.scopes import Permission
from fhir_bridge.security.tokens import Principal
from fhir_bridge.services import Services


class Forbidden(Exception):
    """The viewer's token lacks scopes a page needs; ``missing`` names them."""

    def __init__(self, missing: Iterable[Permission]) -> None:
        self.missing = [p.scope() for p in missing]
        super().__init__(f"your token lacks the scopes {', '.join(self.missing)}")


@dataclass
class Viewer:
    services: Services
    principal: Principal | None  # None: access control is off
    base: str  # the FHIR base URL (for references in the bundles)
    page: str  # the UI path, for the audit trail
    address: str | None
    user: str | None = None  # the person logged in (preferred_username or sub of the token)

    @property
    def name(self) -> str | None:
        """Who the trail names: the person, else the token's client; None with access control off."""
        return self.user or (self.principal.client_id if self.principal else None)

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.principal.grant.scopes if self.principal else ()

    def missing(self, needs: set[Permission]) -> list[Permission]:
        return self.principal.grant.missing(needs) if self.principal else []

    def may(self, *needs: Permission) -> bool:
        return not self.missing(set(needs))

    def _authorise(
        self,
        needs: set[Permission],
        interaction: str,
        resource_type: str | None,
        query: str | None,
        entity: str | None = None,
    ) -> None:
        missing = self.missing(needs)
        if missing:
            self._audit(
                interaction, resource_type, query, entity, 403, "refused: lacks " + " ".join(p.scope() for p in missing)
            )
            raise Forbidden(missing)

    def search(self, resource_type: str, parameters: list[tuple[str, str]]) -> dict[str, Any]:
        """A searchset Bundle of ``resource_type``, as the viewer's own FHIR search would answer it (parsed)."""
        query = redact_query(parameters, self.services.audit_search_hash)
        self._authorise(search_needs(resource_type, parameters), "search-type", resource_type, query)
        bundle = self.services.interactions.search(resource_type, parameters, self.base)
        self._audit("search-type", resource_type, query, None, 200)
        return orjson.loads(orjson.dumps(bundle))  # its resources are stored JSON (orjson.Fragment), passed unparsed

    def resources(self, resource_type: str, parameters: list[tuple[str, str]]) -> list[dict[str, Any]]:
        bundle = self.search(resource_type, parameters)
        return [e["resource"] for e in bundle.get("entry", ()) if e.get("search", {}).get("mode", "match") == "match"]

    def count(self, resource_type: str, parameters: list[tuple[str, str]]) -> int:
        return int(self.search(resource_type, [*parameters, ("_summary", "count")]).get("total", 0))

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        entity = f"{resource_type}/{resource_id}"
        self._authorise({Permission(resource_type, "r")}, "read", resource_type, None, entity)
        try:
            stored = self.services.interactions.read(resource_type, resource_id)
        except FhirError as error:
            if error.status in (404, 410):
                self._audit("read", resource_type, None, entity, error.status)
                return None
            raise
        self._audit("read", resource_type, None, entity, 200)
        return stored.resource

    def audit_records(self, parameters: list[tuple[str, str]], count: int) -> list[Row]:
        """Audit records matching AuditEvent search ``parameters``, newest first (needs ``AuditEvent.s``)."""
        query = redact_query(parameters, self.services.audit_search_hash)
        self._authorise({Permission("AuditEvent", "s")}, "search-type", "AuditEvent", query)
        conditions, _after = search_conditions(parameters)
        rows = self.services.audit_log.search(conditions, after=None, count=count, newest_first=True)
        self._audit("search-type", "AuditEvent", query, None, 200)
        return rows

    def note(self, interaction: str, detail: str) -> None:
        """Record a read that is no FHIR search (the catalogue's counts) in the audit trail."""
        self._audit(interaction, None, None, None, 200, detail)

    def _audit(
        self,
        interaction: str,
        resource_type: str | None,
        query: str | None,
        entity: str | None,
        status: int,
        detail: str | None = None,
    ) -> None:
        self.services.audit_log.record(
            AuditEntry(
                recorded=now_us(),
                client_id=self.name,
                interaction=interaction,
                action="R" if interaction == "read" else "E",
                method="GET",
                path=self.page,
                query=query,
                entity=entity,
                entity_type=resource_type,
                status=status,
                detail=detail or (f"web UI, client {self.principal.client_id}" if self.principal else "web UI"),
                address=self.address,
            )
        )
