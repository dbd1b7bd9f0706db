"""``/metadata``: the CapabilityStatement of what this app's routes serve.

The claims are read off the routers the app includes under the FHIR base (``app.state.fhir_routers``):
each route of ``api.fhir`` says which restful interaction it
serves (``ROUTE_INTERACTIONS``), each route whose last path segment is ``$name`` serves the operation
``name`` where its path says (``/$x``: the system; ``/{resource_type}/...``: every type; ``/Patient/...``:
Patient), and the conditional interactions and patch formats are those the routes implement. A route
removed is a claim withdrawn.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute

from fhir_bridge.api import audit, fhir
from fhir_bridge.api.context import fhir_base, settings
from fhir_bridge.api.rendering import Presentation, presentation, render
from fhir_bridge.audit.events import SEARCH_PARAMETERS as AUDIT_SEARCH_PARAMETERS
from fhir_bridge.interactions.capability import SYSTEM_INTERACTIONS, Features, capability_statement
from fhir_bridge.interactions.patching import PATCH_FORMATS
from fhir_bridge.settings import Settings

STARTED = datetime.now(UTC).isoformat(timespec="seconds")
router = APIRouter(default_response_class=fhir.FhirJsonResponse)


def _operation_at(segments: list[str]) -> tuple[str | None, str] | None:
    """(where, name) of an operation route's path below the FHIR base: where is None for the system,
    "*" for any type, else the type the path names."""
    if not segments or not segments[-1].startswith("$"):
        return None
    name = segments[-1][1:]
    if len(segments) == 1:
        return None, name
    head = segments[0]
    return ("*" if head == "{resource_type}" else head), name


def served_features(app: FastAPI, settings: Settings) -> Features:
    """What the routes of ``app`` serve (see the module docstring); cached on the app."""
    cached = getattr(app.state, "served_features", None)
    if cached is not None:
        return cached
    endpoints, operations = set(), set()
    for router in app.state.fhir_routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            endpoints.add(route.endpoint)
            found = _operation_at([s for s in route.path.split("/") if s])
            if found is not None:
                operations.add(found)
    codes = [code for endpoint, served in fhir.ROUTE_INTERACTIONS.items() if endpoint in endpoints for code in served]
    # a type with routes of its own (the audit trail) is described by them, not by the store's routes
    audit_codes = tuple(c for e, served in audit.ROUTE_INTERACTIONS.items() if e in endpoints for c in served)
    own_types = ((audit.TYPE, audit_codes, AUDIT_SEARCH_PARAMETERS),) if audit_codes else ()
    features = Features(
        type_interactions=tuple(c for c in codes if c not in SYSTEM_INTERACTIONS),
        system_interactions=tuple(c for c in codes if c in SYSTEM_INTERACTIONS),
        operations=frozenset(operations),
        conditional_create=fhir.CONDITIONAL_ROUTES["conditionalCreate"] in endpoints,
        conditional_update=fhir.CONDITIONAL_ROUTES["conditionalUpdate"] in endpoints,
        conditional_delete="single" if fhir.CONDITIONAL_DELETE in endpoints else "not-supported",
        conditional_read=fhir.CONDITIONAL_READ if fhir.read in endpoints else "not-supported",
        patch_formats=PATCH_FORMATS if fhir.patch in endpoints else (),
        enforced_references=settings.enforce_referential_integrity,
        secured=settings.auth != "none",
        own_types=own_types,
    )
    app.state.served_features = features
    return features


@router.get("/metadata", summary="CapabilityStatement", responses=fhir.FHIR_RESPONSES)
def metadata(request: Request, view: Presentation = Depends(presentation)) -> Response:
    features = served_features(request.app, settings(request))
    return render(capability_statement(fhir_base(request), STARTED, features), 200, view)
