"""GET /catalogue/counts: subjects and studies for federated search, with small counts withheld."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from tests.catalogue_data import BREAST, BREAST_CANCER, DCM, PROSTATE_CANCER, transaction
from tests.conftest import TEST_PSEUDONYM_KEY


@pytest.fixture
def counts_client(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, catalogue_min_count=3))
    with TestClient(app) as client:
        assert client.post("/fhir", json=transaction()).status_code == 200
        yield client
    app.state.services.close()


def _counts(client: TestClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/catalogue/counts?{query}")
    assert response.status_code == 200, response.text
    assert response.json()["threshold"] == 3
    return response.json()


def _pair(answer: dict[str, Any]) -> tuple[int | None, int | None]:
    return answer["subjects"], answer["studies"]


EXPECTED: list[tuple[str, tuple[int | None, int | None]]] = [
    ("", (12, 13)),
    ("modality=MR", (10, 10)),
    ("modality=CT", (3, 3)),  # p0's second study, p10, p11
    (f"modality={DCM}|CT", (3, 3)),
    ("modality=MR,CT", (12, 13)),  # comma: OR
    ("modality=MR&modality=CT", (None, None)),  # repeated: AND (no study has both)
    ("modality=US", (None, None)),  # one subject
    ("sex=female&modality=MR", (7, 7)),
    ("sex=female,male", (11, 12)),
    (f"condition={BREAST_CANCER}", (5, 6)),  # p0-p4, p0 with two studies
    (f"condition=http://snomed.info/sct|{PROSTATE_CANCER}", (None, None)),  # p7, p8
    ("manufacturer=siemens", (8, 8)),  # case-insensitive
    ("manufacturer=GE%20MEDICAL%20SYSTEMS", (4, 4)),
    ("manufacturer=Rare%20Vendor", (None, None)),
    (f"bodypart={BREAST}&sex=female", (7, 7)),
    (f"bodypart={BREAST}&sex=male", (None, None)),
]


def test_counts(counts_client: TestClient) -> None:
    """One data set, many queries (a fixture per query would load it again for each)."""
    answers = {query: _pair(_counts(counts_client, query)) for query, _ in EXPECTED}
    assert answers == dict(EXPECTED)


def test_strata_leave_out_small_values(counts_client: TestClient) -> None:
    answer = _counts(counts_client, "stratify=sex")
    assert answer["stratifier"] == "sex"
    assert [(s["value"], s["subjects"], s["studies"]) for s in answer["strata"]] == [
        ("female", 7, 8),
        ("male", 4, 4),
    ]  # "other": one subject
    modalities = _counts(counts_client, "stratify=modality&sex=female")["strata"]
    assert [(s["value"], s["subjects"]) for s in modalities] == [(f"{DCM}|MR", 7)]  # CT: p0 only
    makers = _counts(counts_client, "stratify=manufacturer")["strata"]
    assert [(s["code"], s["subjects"], s["studies"]) for s in makers] == [
        ("SIEMENS", 8, 8),
        ("GE MEDICAL SYSTEMS", 4, 4),
    ]
    conditions = _counts(counts_client, "stratify=condition")["strata"]
    assert [(s["code"], s["subjects"], s["studies"]) for s in conditions] == [(BREAST_CANCER, 5, 6)]


def test_counts_follow_updates_and_deletes(counts_client: TestClient) -> None:
    assert _pair(_counts(counts_client, "modality=CT")) == (3, 3)
    assert counts_client.delete("/fhir/ImagingStudy/s11").status_code in (200, 204)
    assert _pair(_counts(counts_client, "modality=CT")) == (None, None)  # p0 and p10 left
    patient = counts_client.get("/fhir/Patient/p10").json() | {"gender": "female"}
    assert counts_client.put("/fhir/Patient/p10", json=patient).status_code == 200
    assert _pair(_counts(counts_client, "sex=female")) == (8, 9)


def test_bad_queries_are_refused(counts_client: TestClient) -> None:
    for query in ("age=50", "modality=", "stratify=age", "sex=female&_format=json"):
        response = counts_client.get(f"/catalogue/counts?{query}")
        assert response.status_code == 400, query
        assert response.json()["resourceType"] == "OperationOutcome"
