"""The CapabilityStatement, generated from what the server implements.

Nothing here is claimed by hand: ``Features`` is worked out by the API from the routes the app serves
(``api.capabilities``): the interactions of its routes, the operations at the paths it answers, the
conditional interactions its routes implement, the patch formats ``interactions.patching`` applies.
Resource types and search parameters come from the spec registry; a search parameter is listed only
where the search compiler supports its type and the index holds it, with the modifiers the compiler
supports. ``tests/test_capability_claims.py`` exercises every claim against the live app.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from fhir_bridge.search.query import SUPPORTED_MODIFIERS
from fhir_bridge.spec.registry import FHIR_VERSION, resource_types, search_parameters
from fhir_bridge.version import package_version

SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
FHIR_OPERATION = "http://hl7.org/fhir/OperationDefinition/"
# The canonical definition of each operation, by where it is invoked (None: the system; "*": any type).
OPERATION_DEFINITIONS: dict[str, dict[str | None, str]] = {
    "export": {
        None: f"{BULK_DATA}/OperationDefinition/export",
        "Patient": f"{BULK_DATA}/OperationDefinition/patient-export",
        "Group": f"{BULK_DATA}/OperationDefinition/group-export",
    },
    "validate": {"*": f"{FHIR_OPERATION}Resource-validate"},
    "meta": {None: f"{FHIR_OPERATION}Resource-meta", "*": f"{FHIR_OPERATION}Resource-meta"},
    "meta-add": {"*": f"{FHIR_OPERATION}Resource-meta-add"},
    "meta-delete": {"*": f"{FHIR_OPERATION}Resource-meta-delete"},
    "everything": {"Patient": f"{FHIR_OPERATION}Patient-everything"},
}


@dataclass(frozen=True)
class Features:
    """What the server does, as the API found it in its routes (see the module docstring)."""

    type_interactions: tuple[str, ...]
    system_interactions: tuple[str, ...]
    operations: frozenset[tuple[str | None, str]]  # (None: system, "*": every type, or a type; name)
    conditional_create: bool
    conditional_update: bool
    conditional_delete: str  # not-supported | single | multiple
    conditional_read: str  # not-supported | modified-since | not-match | full-support
    patch_formats: tuple[str, ...]
    enforced_references: bool
    secured: bool
    # types served by routes of their own: (type, interactions, search parameter names)
    own_types: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()


def _operations(features: Features, where: str | None) -> list[dict[str, str]]:
    """The operations invocable on ``where`` (a type, or None: the system), with their definitions."""
    listed = []
    for name in sorted({n for at, n in features.operations if at == where or (where and at == "*")}):
        definitions = OPERATION_DEFINITIONS.get(name, {})
        definition = definitions.get(where) or (definitions.get("*") if where else None)
        if definition:
            listed.append({"name": name, "definition": definition})
    return listed


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    listed = []
    for code, parameter in sorted(search_parameters(resource_type).items()):
        if parameter.type in SUPPORTED_MODIFIERS and (parameter.indexed or code in ("_id", "_lastUpdated")):
            entry = {"name": code, "definition": parameter.url, "type": parameter.type}
            modifiers = sorted(SUPPORTED_MODIFIERS[parameter.type]) if parameter.indexed else []
            if modifiers:
                entry["documentation"] = "Modifiers: " + ", ".join(f":{m}" for m in modifiers)
            listed.append(entry)
    return listed


def _own_resource(resource_type: str, interactions: tuple[str, ...], names: tuple[str, ...]) -> dict[str, Any]:
    """A type served by routes of its own (the audit trail): their interactions and parameters only."""
    known = search_parameters(resource_type)
    search = [{"name": n, "definition": known[n].url, "type": known[n].type} for n in names if n in known]
    resource: dict[str, Any] = {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in interactions],
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
    }
    if search:
        resource["searchParam"] = search
    return resource


def _resource(resource_type: str, features: Features) -> dict[str, Any]:
    for own_type, interactions, names in features.own_types:
        if own_type == resource_type:
            return _own_resource(resource_type, interactions, names)
    policy = ["literal", "local", *(["enforced"] if features.enforced_references else [])]
    resource: dict[str, Any] = {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in features.type_interactions],
        "versioning": "versioned-update",
        "readHistory": "vread" in features.type_interactions,
        "updateCreate": "update" in features.type_interactions,
        "conditionalCreate": features.conditional_create,
        "conditionalRead": features.conditional_read,
        "conditionalUpdate": features.conditional_update,
        "conditionalDelete": features.conditional_delete,
        "referencePolicy": policy,
    }
    # json.html: no empty arrays
    if search := _search_params(resource_type):
        resource["searchParam"] = search
    if operations := _operations(features, resource_type):
        resource["operation"] = operations
    return {k: v for k, v in resource.items() if v != []}


SMART_SECURITY = {
    "service": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                }
            ],
            "text": "OAuth 2.0 bearer tokens with SMART v2 system scopes (SMART Backend Services)",
        }
    ],
    "description": "Every request but /metadata needs a bearer token; see [base]/.well-known/smart-configuration",
}


def _security(base: str) -> dict[str, Any]:
    """rest.security of a server with access control: SMART, and the oauth-uris of the token endpoint."""
    uris = {
        "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
        "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
    }
    return {"extension": [uris], **SMART_SECURITY}


@cache
def _capability_json(base: str, date: str, features: Features) -> bytes:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t, features) for t in sorted(resource_types())],
        "interaction": [{"code": code} for code in features.system_interactions],
        "searchParam": _search_params("Resource"),
        "operation": _operations(features, None),
    }
    if features.secured:
        rest["security"] = _security(base)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhir-bridge",
        "kind": "instance",
        "software": {"name": "fhir-bridge", "version": package_version()},
        "implementation": {"description": "fhir-bridge: imaging-to-FHIR bridge", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": list(features.patch_formats),
        "rest": [{k: v for k, v in rest.items() if v != []}],
    }
    if any(name == "export" for _, name in features.operations):
        statement["instantiates"] = [f"{BULK_DATA}/CapabilityStatement/bulk-data"]
    return orjson.dumps({k: v for k, v in statement.items() if v != []})


def capability_statement(base: str, date: str, features: Features) -> bytes:
    """The CapabilityStatement as JSON bytes (built once per base URL and feature set)."""
    return _capability_json(base, date, features)
