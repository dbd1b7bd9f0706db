"""The CapabilityStatement, generated from what the server implements.

Resource types and search parameters come from the spec registry; a search parameter is listed
only where the search compiler supports its type and the index holds it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from fhir_bridge.search.query import SUPPORTED_MODIFIERS
from fhir_bridge.spec.registry import FHIR_VERSION, resource_types, search_parameters
from fhir_bridge.version import package_version

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
# Bulk Data Access $export, by where it is invoked (the system, or a resource type)
EXPORT_OPERATIONS = {None: "export", "Patient": "patient-export", "Group": "group-export"}


def _export_operation(resource_type: str | None) -> list[dict[str, str]]:
    name = EXPORT_OPERATIONS.get(resource_type)
    return [{"name": "export", "definition": f"{BULK_DATA}/OperationDefinition/{name}"}] if name else []


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    listed = []
    for code, parameter in sorted(search_parameters(resource_type).items()):
        if parameter.type in SUPPORTED_MODIFIERS and (parameter.indexed or code in ("_id", "_lastUpdated")):
            listed.append({"name": code, "definition": parameter.url, "type": parameter.type})
    return listed


def _resource(resource_type: str) -> dict[str, Any]:
    operations = {"operation": _export_operation(resource_type)} if resource_type in EXPORT_OPERATIONS else {}
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "enforced", "local"],
        "searchParam": _search_params(resource_type),
        **operations,
    }


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
def _capability_json(base: str, date: str, secured: bool) -> bytes:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t) for t in sorted(resource_types())],
        "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
        "searchParam": _search_params("Resource"),
        "operation": _export_operation(None),
    }
    if secured:
        rest["security"] = _security(base)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhir-bridge",
        "kind": "instance",
        "instantiates": [f"{BULK_DATA}/CapabilityStatement/bulk-data"],
        "software": {"name": "fhir-bridge", "version": package_version()},
        "implementation": {"description": "fhir-bridge: imaging-to-FHIR bridge", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }
    return orjson.dumps(statement)


def capability_statement(base: str, date: str, *, secured: bool = False) -> bytes:
    """The CapabilityStatement as JSON bytes (built once per base URL); ``secured`` adds rest.security."""
    return _capability_json(base, date, secured)
