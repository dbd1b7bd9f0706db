"""Beacon v2 documents (GA4GH Beacon v2.0 framework): the collections answer and the informational endpoints.

Samply Focus's ``eucaim_beacon`` backend POSTs ``{endpoint}/collections`` with EUCAIM HyperOntology
filters and passes the ``response`` member on to the central UI; the other endpoints are those a Beacon
client reads first (``/info``, ``/service-info``, ``/configuration``, ``/map``, ``/entry_types``,
``/filtering_terms``). The entry type is ``dataset`` (a collection); each collection carries the same
members as the EUCAIM API's (id, name, description, subjects_count, studies_count). Property names and
required members follow the framework's JSON Schemas (``framework/json``), which the tests validate against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fhir_bridge.eucaim.concepts import EUCAIM, Concepts
from fhir_bridge.eucaim.criteria import searchable
from fhir_bridge.eucaim.federated import Collection

API_VERSION = "v2.0.0"
FRAMEWORK = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/framework/json"
DATASET_SCHEMA = (
    "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/models/json/beacon-v2-default-model/"
    "datasets/defaultSchema.json"
)
RETURNED_SCHEMAS = [{"entityType": "dataset", "schema": "ga4gh-beacon-dataset-v2.0.0"}]
Environment = Literal["prod", "test", "dev", "staging"]
_STATUS = {"prod": "PROD", "test": "TEST", "staging": "TEST", "dev": "DEV"}
GRANULARITIES = ("boolean", "count", "aggregated", "record")


@dataclass(frozen=True)
class BeaconDescription:
    """Who runs the beacon and where: from the catalogue settings and the request's URL."""

    beacon_id: str
    name: str
    description: str
    environment: Environment
    organization: str
    organization_url: str  # the publisher's home page, else the node's own URL
    version: str
    root_url: str  # the beacon's base URL as the client sees it (…/eucaim/beacon)


def _meta(about: BeaconDescription) -> dict[str, Any]:
    return {"beaconId": about.beacon_id, "apiVersion": API_VERSION, "returnedSchemas": RETURNED_SCHEMAS}


def info(about: BeaconDescription) -> dict[str, Any]:
    return {
        "meta": _meta(about),
        "response": {
            "id": about.beacon_id,
            "name": about.name,
            "apiVersion": API_VERSION,
            "environment": about.environment,
            "organization": {
                "id": about.organization,
                "name": about.organization,
                "welcomeUrl": about.organization_url,
            },
            "description": about.description,
            "version": about.version,
            "welcomeUrl": about.root_url,
        },
    }


def service_info(about: BeaconDescription) -> dict[str, Any]:
    """GA4GH service-info 1.0.0, as Beacon v2 serves it at ``/service-info``."""
    return {
        "id": about.beacon_id,
        "name": about.name,
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": about.description,
        "organization": {"name": about.organization, "url": about.organization_url},
        "version": about.version,
        "environment": about.environment,
    }


def _dataset_entry_type() -> dict[str, Any]:
    return {
        "id": "dataset",
        "name": "Dataset",
        "description": "A dataset of the node, with the counts of its subjects and studies meeting the filters",
        "ontologyTermForThisType": {"id": "NCIT:C47824", "label": "Data set"},
        "partOfSpecification": "Beacon v2.0.0",
        "defaultSchema": {
            "id": "ga4gh-beacon-dataset-v2.0.0",
            "name": "Default schema for datasets",
            "referenceToSchemaDefinition": DATASET_SCHEMA,
            "schemaVersion": API_VERSION,
        },
        "nonFilteredQueriesAllowed": True,
    }


def configuration(about: BeaconDescription) -> dict[str, Any]:
    return {
        "meta": _meta(about),
        "response": {
            "$schema": f"{FRAMEWORK}/configuration/beaconConfigurationSchema.json",
            "maturityAttributes": {"productionStatus": _STATUS[about.environment]},
            "securityAttributes": {"defaultGranularity": "record", "securityLevels": ["CONTROLLED"]},
            "entryTypes": {"dataset": _dataset_entry_type()},
        },
    }


def entry_types(about: BeaconDescription) -> dict[str, Any]:
    return {"meta": _meta(about), "response": {"entryTypes": {"dataset": _dataset_entry_type()}}}


def beacon_map(about: BeaconDescription) -> dict[str, Any]:
    return {
        "meta": _meta(about),
        "response": {
            "$schema": f"{FRAMEWORK}/configuration/beaconMapSchema.json",
            "endpointSets": {
                "dataset": {
                    "entryType": "dataset",
                    "rootUrl": f"{about.root_url}/collections",
                    "filteringTermsUrl": f"{about.root_url}/filtering_terms",
                }
            },
        },
    }


def filtering_terms(about: BeaconDescription, concepts: Concepts) -> dict[str, Any]:
    """Exactly the filters this node answers: the EUCAIM concepts of Focus's criteria that it maps."""
    terms = [
        {"type": "EUCAIM HyperOntology", "id": c.curie, "label": c.label, "scopes": ["patients"]}
        for c in searchable(concepts)
        if concepts.store_codes(c.code)
    ]
    response: dict[str, Any] = {
        "resources": [
            {
                "id": "eucaim",
                "name": "EUCAIM HyperOntology",
                "nameSpacePrefix": "EUCAIM",
                "iriPrefix": f"{EUCAIM}#",
                "url": EUCAIM,
            }
        ]
    }
    if terms:
        response["filteringTerms"] = terms
    return {"meta": _meta(about), "response": response}


@dataclass(frozen=True)
class Request:
    """What the client asked for, echoed in ``meta.receivedRequestSummary``."""

    filters: tuple[str, ...] = ()
    skip: int = 0
    limit: int = 10
    granularity: str = "record"
    test_mode: bool = False

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "requestedSchemas": RETURNED_SCHEMAS,
            "pagination": {"skip": self.skip, "limit": self.limit},
            "requestedGranularity": self.granularity,
            "testMode": self.test_mode,
        }
        if self.filters:
            summary["filters"] = list(self.filters)
        return summary


def _response_meta(about: BeaconDescription, request: Request, granularity: str) -> dict[str, Any]:
    return {
        "beaconId": about.beacon_id,
        "apiVersion": API_VERSION,
        "returnedSchemas": RETURNED_SCHEMAS,
        "returnedGranularity": granularity,
        "receivedRequestSummary": request.summary(),
        "testMode": request.test_mode,
    }


def collections(about: BeaconDescription, request: Request, found: Sequence[Collection]) -> dict[str, Any]:
    """The collections response; ``boolean`` and ``count`` requests get no collection records."""
    page = list(found)[request.skip : request.skip + request.limit] if request.limit else list(found)[request.skip :]
    granularity = request.granularity if request.granularity in ("boolean", "count") else "record"
    summary: dict[str, Any] = {"exists": bool(found)}
    if granularity != "boolean":
        summary["numTotalResults"] = len(found)
    return {
        "meta": _response_meta(about, request, granularity),
        "responseSummary": summary,
        "response": {"collections": [c.as_json() for c in page] if granularity == "record" else []},
    }


def error(about: BeaconDescription, request: Request, status: int, message: str) -> dict[str, Any]:
    return {
        "meta": _response_meta(about, request, "boolean"),
        "error": {"errorCode": status, "errorMessage": message},
    }
