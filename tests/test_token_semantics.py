"""One token matcher for search and the catalogue's counts, with the FHIR semantics (R4 search.html#token).

``code``: that code in any system; ``system|code``: in that system; ``|code``: with no system;
``system|``: any code of that system. The same data is searched through the FHIR API and counted
through ``/catalogue/counts``: both must find the same studies for every form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY

DCM = "http://dicom.nema.org/resources/ontology/DCM"
OTHER = "urn:example:modalities"
MODALITIES: dict[str, dict[str, str]] = {
    "dcm-ct": {"system": DCM, "code": "CT"},
    "dcm-mr": {"system": DCM, "code": "MR"},
    "bare-ct": {"code": "CT"},  # no system
    "other-ct": {"system": OTHER, "code": "CT"},
}


def _study(study_id: str, modality: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": study_id,
        "status": "available",
        "subject": {"reference": f"Patient/{study_id}-patient"},
        "series": [{"uid": f"1.2.3.{len(study_id)}.{sum(map(ord, study_id))}", "modality": modality}],
    }


@pytest.fixture
def modalities(database_url: str) -> Iterator[TestClient]:
    """Four studies of four patients whose modality codings differ only in system; counts unsuppressed."""
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=1))
    entries = []
    for study_id, modality in MODALITIES.items():
        patient = {"resourceType": "Patient", "id": f"{study_id}-patient", "gender": "female"}
        for resource in (patient, _study(study_id, modality)):
            url = f"{resource['resourceType']}/{resource['id']}"
            entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})
    with TestClient(app) as client:
        response = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert response.status_code == 200, response.text
        yield client
    app.state.services.close()


def _searched(client: TestClient, value: str) -> set[str]:
    response = client.get("/fhir/ImagingStudy", params={"modality": value})
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])}


def _counted(client: TestClient, value: str) -> int | None:
    response = client.get("/catalogue/counts", params={"modality": value})
    assert response.status_code == 200, response.text
    return response.json()["studies"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CT", {"dcm-ct", "bare-ct", "other-ct"}),  # code: any system
        (f"{DCM}|CT", {"dcm-ct"}),  # system|code
        ("|CT", {"bare-ct"}),  # |code: no system
        (f"{DCM}|", {"dcm-ct", "dcm-mr"}),  # system|: any code of the system
        (f"{OTHER}|", {"other-ct"}),
        (f"{DCM}|,|CT", {"dcm-ct", "dcm-mr", "bare-ct"}),  # ORed forms
        (f"{OTHER}|MR", set()),
    ],
)
def test_search_and_catalogue_counts_match_tokens_alike(modalities: TestClient, value: str, expected: set[str]) -> None:
    assert _searched(modalities, value) == expected
    assert _counted(modalities, value) == (len(expected) or None)  # zero is withheld like any small count
