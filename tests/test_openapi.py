"""openapi/openapi.json is the app's own document: regenerate it with `fhir-bridge openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_bridge.cli import openapi_document

EXPORTED = Path(__file__).parent.parent / "openapi" / "openapi.json"


def test_exported_openapi_document_is_up_to_date():
    exported = json.loads(EXPORTED.read_text(encoding="utf-8"))
    assert exported == openapi_document(), "openapi/openapi.json is stale: run `fhir-bridge openapi`"


def test_openapi_document_describes_the_fhir_interactions():
    paths = openapi_document()["paths"]
    assert {"get", "put", "patch", "delete"} <= set(paths["/fhir/{resource_type}/{resource_id}"])
    assert "post" in paths["/fhir/"]
    assert "get" in paths["/fhir/metadata"]
