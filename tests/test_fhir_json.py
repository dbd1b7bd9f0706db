"""The json.html check that the ``client`` and ``secured`` fixtures run on every response (tests/fhir_json.py)
finds what it is meant to find, so that the suite's flows passing means the server wrote no empty values."""

from __future__ import annotations

import httpx
import pytest

from tests.fhir_json import check_response, empty_places


def _response(body: bytes, media_type: str = "application/fhir+json") -> httpx.Response:
    return httpx.Response(
        200, content=body, headers={"Content-Type": media_type}, request=httpx.Request("GET", "http://x/fhir")
    )


def test_empty_arrays_objects_and_strings_are_found_where_they_are() -> None:
    document = {
        "resourceType": "Patient",
        "name": [{"given": ["", "x"]}],
        "identifier": [],
        "meta": {},
        "text": {"div": " "},
    }
    assert empty_places(document) == ["name[0].given[0]", "identifier", "meta", "text.div"]
    assert empty_places({"resourceType": "Patient", "active": False, "multipleBirthInteger": 0}) == []


def test_the_response_check_fails_on_fhir_json_and_ndjson_with_empties_only() -> None:
    with pytest.raises(AssertionError, match="entry"):
        check_response(_response(b'{"resourceType":"Bundle","type":"searchset","entry":[]}'))
    with pytest.raises(AssertionError, match="name"):
        check_response(
            _response(b'{"resourceType":"Patient"}\n{"resourceType":"Patient","name":[]}\n', "application/fhir+ndjson")
        )
    with pytest.raises(AssertionError):  # JSON holding a resource, whatever its media type says
        check_response(_response(b'{"resourceType":"Patient","name":[]}', "application/json"))
    check_response(_response(b'{"resourceType":"Bundle","type":"searchset"}'))
    check_response(_response(b'{"transactionTime":"2024","output":[],"error":[]}', "application/json"))  # Bulk manifest
    check_response(_response(b"", "application/fhir+json"))  # HEAD, 304
