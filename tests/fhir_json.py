"""The json.html rule for everything the server writes: no empty arrays, objects or strings.

``check_response`` is an httpx response hook: the ``client`` and ``secured`` fixtures (tests/conftest.py)
run it on every response of the suite's flows through them, so a test fails on the first FHIR JSON body
(``application/fhir+json``, or JSON with a ``resourceType``, or each line of ``application/fhir+ndjson``)
that holds one. Non-FHIR JSON (the Bulk Data manifest, whose IG asks for ``"error": []``, /catalogue/counts)
is not FHIR JSON and is not checked.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

FHIR_JSON = ("application/fhir+json", "application/json", "application/json+fhir")


def empty_places(value: Any, path: str = "") -> list[str]:
    """The paths of the empty arrays, objects and strings in ``value`` (FHIR JSON, json.html)."""
    if isinstance(value, dict):
        here = [path or "(root)"] if not value else []
        return here + [p for key, item in value.items() for p in empty_places(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        here = [path] if not value else []
        return here + [p for i, item in enumerate(value) for p in empty_places(item, f"{path}[{i}]")]
    if isinstance(value, str) and not value.strip():
        return [path]
    return []


def fhir_documents(response: httpx.Response) -> list[Any]:
    """The FHIR JSON documents of a response (none for other media types and for empty bodies)."""
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not response.content:
        return []
    if media_type == "application/fhir+ndjson":
        return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]
    if media_type not in FHIR_JSON:
        return []
    body = orjson.loads(response.content)
    if media_type == "application/fhir+json" or (isinstance(body, dict) and "resourceType" in body):
        return [body]
    return []


def check_response(response: httpx.Response) -> None:
    """Fail on a FHIR JSON body with an empty array, object or string (json.html)."""
    response.read()
    for document in fhir_documents(response):
        if empty := empty_places(document):
            request = response.request
            raise AssertionError(
                f"{request.method} {request.url} answered FHIR JSON with empty values at {empty[:5]} (json.html)"
            )
