"""EUCAIM federated search as Samply Focus asks for it: the EUCAIM search API and the Beacon v2.

The requests are Focus's own (tests/data/focus: the URL its eucaim_api builds, the bodies its
eucaim_beacon builds, from its source and tests); Beacon responses are validated against the GA4GH
Beacon v2 framework JSON Schemas (tests/data/beacon-v2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from fhir_bridge import Settings, create_app
from fhir_bridge.eucaim.concepts import CONCEPT_MAPS, FOCUS_API, HYPERONTOLOGY, shipped
from fhir_bridge.security.clients import ClientRegistry
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.eucaim_data import transaction
from tests.security_helpers import bearer, ec_key

DATA = Path(__file__).parent / "data"
FOCUS = {name: json.loads((DATA / "focus" / f"eucaim_{name}.json").read_text()) for name in ("api", "beacon", "sql")}
SCHEMAS = DATA / "beacon-v2" / "framework" / "json"
SCHEMA_BASE = "https://beacon.test/framework/json/"

# (query as Focus's eucaim_api sends it, (subjects_count, studies_count)); see tests/eucaim_data.py
EXPECTED: list[tuple[str, tuple[int, int] | None]] = [
    ("", (13, 14)),
    ("gender=female", (5, 6)),
    ("gender=male", (5, 5)),
    ("gender=other", (1, 1)),
    ("gender=unknown", (1, 1)),
    ("diagnosis=SNOMEDCT254837009", (5, 6)),  # SNOMED CT and ICD-10 C50.x
    ("diagnosis=SNOMEDCT399068003", (3, 3)),  # with C61; e12 has no study
    ("diagnosis=SNOMEDCT363358000", (2, 3)),  # NSCLC (a descendant) and C34.1
    ("diagnosis=SNOMEDCT363406005", (2, 2)),
    ("diagnosis=SNOMEDCT363484005", (1, 1)),
    ("modality=MR", (13, 8)),  # imaging criteria narrow the studies, not the subjects (as Focus's SQL counts)
    ("modality=CT", (13, 5)),
    ("modality=PET", (13, 1)),
    ("modality=SPECT", (13, 1)),
    ("bodyPart=breast", (13, 6)),
    ("bodyPart=pelvis", (13, 1)),
    ("manufacturer=Siemens", (13, 9)),  # SIEMENS and Siemens Healthineers
    ("manufacturer=General%20Electric", (13, 3)),  # percent-encoded, as Focus sends it
    ("manufacturer=Philips", (13, 2)),
    ("modality=CT&manufacturer=Siemens", (13, 2)),  # each criterion on any series of the study
    ("gender=female&modality=MR&bodyPart=breast&manufacturer=Siemens", (5, 3)),
    ("gender=male&diagnosis=SNOMEDCT399068003&modality=MR&bodyPart=prostate&manufacturer=Philips", (3, 1)),
    ("gender=female&diagnosis=SNOMEDCT363358000", None),  # nobody
    ("diagnosis=SNOMEDCT363484005&modality=CT", None),  # a subject, but no study: not published
]


def _app(database_url: str, **settings: Any):  # type: ignore[no-untyped-def]
    settings = {"catalogue_min_count": 1, **settings}
    return create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, **settings))


@pytest.fixture
def node(database_url: str) -> Iterator[TestClient]:
    app = _app(database_url)
    with TestClient(app) as client:
        _load(client)
        yield client
    app.state.services.close()


def _load(client: TestClient) -> None:
    """The data set, and planner statistics as a node has them in use (PostgreSQL's autovacuum, the store's
    own refresh): without them the planner nests loops over the index tables of a brand-new database."""
    assert client.post("/fhir", json=transaction()).status_code == 200
    client.app.state.services.store.refresh_statistics()  # type: ignore[attr-defined]


def _pair(answer: dict[str, Any]) -> tuple[int, int] | None:
    collections = answer["collections"]
    assert len(collections) <= 1
    if not collections:
        assert answer["total"] == {"subjects_count": 0, "studies_count": 0}
        return None
    assert answer["total"] == {k: collections[0][k] for k in ("subjects_count", "studies_count")}
    return collections[0]["subjects_count"], collections[0]["studies_count"]


def _search(client: TestClient, query: str) -> dict[str, Any]:
    response = client.get(f"/eucaim/search?{query}")
    assert response.status_code == 200, response.text
    return response.json()


def _filters(query: str) -> list[dict[str, str]]:
    """The Beacon filters Focus sends for the same criteria as an EUCAIM API query (its two tables joined)."""
    api, beacon = FOCUS["api"], FOCUS["beacon"]
    keys = {v.replace("%20", " "): k for k, v in api["criterion"].items()}
    filters = []
    for part in filter(None, query.split("&")):
        _, value = part.split("=")
        key = keys[value.replace("%20", " ")]
        filters.append({"id": beacon["criterion"][key], "scope": "patients"})
    return filters


def _beacon_body(filters: list[dict[str, str]]) -> dict[str, Any]:
    body = json.loads(json.dumps(FOCUS["beacon"]["tests"]["EMPTY_BODY"]))
    body["query"]["filters"] = filters
    return body


@pytest.fixture(scope="module")
def registry() -> Registry:
    resources = [
        (SCHEMA_BASE + path.relative_to(SCHEMAS).as_posix(), json.loads(path.read_text()))
        for path in SCHEMAS.rglob("*.json")
    ]
    return Registry().with_resources((uri, Resource.from_contents(c, DRAFT202012)) for uri, c in resources)


def _valid(registry: Registry, schema: str, document: Any) -> None:
    validator = Draft202012Validator(
        {"$ref": SCHEMA_BASE + schema}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not problems, problems


def test_focus_eucaim_api_urls_are_answered_with_counts_per_dataset(node: TestClient) -> None:
    empty = node.get(f"/eucaim/search?{urlsplit(FOCUS['api']['tests']['test_build_url_empty']).query}")
    assert empty.status_code == 200
    assert empty.json() == {
        "collections": [
            {
                "id": "fhir-bridge",
                "name": "fhir-bridge imaging dataset",
                "description": "DICOM imaging studies and related clinical data of one hospital, as FHIR R4 resources.",
                "subjects_count": 13,
                "studies_count": 14,
            }
        ],
        "total": {"subjects_count": 13, "studies_count": 14},
    }
    # male, prostate cancer, MR of the breast by Philips: three subjects, none with such a study
    just_right = node.get(f"/eucaim/search?{urlsplit(FOCUS['api']['tests']['test_build_url_just_right']).query}")
    assert just_right.status_code == 200
    assert just_right.json() == {"collections": [], "total": {"subjects_count": 0, "studies_count": 0}}


def test_counts_follow_focus_semantics(node: TestClient) -> None:
    answers = {query: _pair(_search(node, query)) for query, _ in EXPECTED}
    assert answers == dict(EXPECTED)


def test_every_value_focus_can_send_is_accepted(node: TestClient) -> None:
    parameters = FOCUS["api"]["category"].values()
    for value in FOCUS["api"]["criterion"].values():
        answers = [node.get(f"/eucaim/search?{parameter}={value}").status_code for parameter in parameters]
        assert answers.count(200) == 1, (value, answers)  # under exactly one parameter; 400 under the others


def test_unknown_parameters_and_values_are_refused_with_what_is_accepted(node: TestClient) -> None:
    refused = node.get("/eucaim/search?age=50")
    assert refused.status_code == 400
    text = refused.json()["issue"][0]["diagnostics"]
    assert "gender: female, male, other, unknown" in text and "manufacturer: General Electric, Philips" in text
    refused = node.get("/eucaim/search?modality=US")
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["diagnostics"] == "unknown modality 'US'; accepted values: CT, MR, PET, SPECT"
    assert node.get("/eucaim/search?gender=male&gender=female").status_code == 400
    assert node.get("/eucaim/search?gender=").status_code == 400


def test_focus_beacon_requests_validate_and_are_answered(node: TestClient, registry: Registry) -> None:
    for name in ("EMPTY_BODY", "FIRST_BODY"):
        body = FOCUS["beacon"]["tests"][name]
        _valid(registry, "requests/beaconRequestBody.json", body)
        response = node.post("/eucaim/beacon/collections", json=body)
        assert response.status_code == 200, response.text
        _valid(registry, "responses/beaconCollectionsResponse.json", response.json())
    first = node.post("/eucaim/beacon/collections", json=FOCUS["beacon"]["tests"]["FIRST_BODY"]).json()
    assert first["responseSummary"] == {"exists": False, "numTotalResults": 0}  # no male MR of the breast by Philips
    assert first["meta"]["receivedRequestSummary"]["filters"] == [
        f["id"] for f in FOCUS["beacon"]["tests"]["FIRST_BODY"]["query"]["filters"]
    ]
    empty = node.post("/eucaim/beacon/collections", json=FOCUS["beacon"]["tests"]["EMPTY_BODY"]).json()
    assert empty["responseSummary"] == {"exists": True, "numTotalResults": 1}
    assert [(c["subjects_count"], c["studies_count"]) for c in empty["response"]["collections"]] == [(13, 14)]


def test_beacon_and_api_answer_the_same_question_alike(node: TestClient, registry: Registry) -> None:
    for query, expected in EXPECTED:
        response = node.post("/eucaim/beacon/collections", json=_beacon_body(_filters(query)))
        assert response.status_code == 200, (query, response.text)
        _valid(registry, "responses/beaconCollectionsResponse.json", response.json())
        collections = response.json()["response"]["collections"]
        assert collections == _search(node, query)["collections"], query
        found = (collections[0]["subjects_count"], collections[0]["studies_count"]) if collections else None
        assert found == expected, query
    as_get = node.get("/eucaim/beacon/collections?filters=EUCAIM:COM1001370,EUCAIM:IMG1000038")
    assert as_get.status_code == 200
    assert as_get.json()["response"]["collections"] == _search(node, "gender=female&modality=MR")["collections"]


def test_beacon_refuses_filters_it_cannot_answer_with_a_beacon_error(node: TestClient, registry: Registry) -> None:
    for filters in (
        [{"id": "EUCAIM:CLIN9999999", "scope": "patients"}],
        [{"id": "NCIT:C16576", "scope": "patients"}],
        [{"id": "EUCAIM:COM1001366", "scope": "biosamples"}],
        [{"id": "age", "operator": ">", "value": "50"}],
    ):
        response = node.post("/eucaim/beacon/collections", json=_beacon_body(filters))
        assert response.status_code == 400, filters
        _valid(registry, "responses/beaconErrorResponse.json", response.json())
    unknown = node.post("/eucaim/beacon/collections", json=_beacon_body([{"id": "EUCAIM:CLIN9999999"}])).json()
    assert "EUCAIM:COM1001366" in unknown["error"]["errorMessage"]  # lists what it answers
    assert node.post("/eucaim/beacon/collections", content=b"{not json").status_code == 400


def test_beacon_informational_endpoints_validate(node: TestClient, registry: Registry) -> None:
    for path, schema in (
        ("", "responses/beaconInfoResponse.json"),
        ("/info", "responses/beaconInfoResponse.json"),
        ("/service-info", "responses/ga4gh-service-info-1-0-0-schema.json"),
        ("/configuration", "responses/beaconConfigurationResponse.json"),
        ("/map", "responses/beaconMapResponse.json"),
        ("/entry_types", "responses/beaconEntryTypesResponse.json"),
        ("/filtering_terms", "responses/beaconFilteringTermsResponse.json"),
    ):
        response = node.get(f"/eucaim/beacon{path}")
        assert response.status_code == 200, path
        _valid(registry, schema, response.json())
    rooted = node.get("/eucaim/beacon/map").json()["response"]["endpointSets"]["dataset"]
    assert rooted["rootUrl"] == "http://testserver/eucaim/beacon/collections"


def test_filtering_terms_are_exactly_what_focus_may_send_and_the_node_maps(node: TestClient) -> None:
    terms = node.get("/eucaim/beacon/filtering_terms").json()["response"]["filteringTerms"]
    assert sorted(t["id"] for t in terms) == sorted(set(FOCUS["beacon"]["criterion"].values()))
    # a site whose map no longer knows Toshiba: the filter is no longer offered
    hyper = json.loads(json.dumps(shipped(HYPERONTOLOGY)))
    for group in hyper["group"]:
        group["element"] = [e for e in group["element"] if e["code"] != "Toshiba"]
    assert node.put(f"/fhir/ConceptMap/{hyper['id']}", json=hyper).status_code in (200, 201)
    terms = node.get("/eucaim/beacon/filtering_terms").json()["response"]["filteringTerms"]
    assert "EUCAIM:IMG1000045" not in {t["id"] for t in terms}
    assert len(terms) == len(set(FOCUS["beacon"]["criterion"].values())) - 1


def test_a_concept_map_stored_by_the_site_wins_over_the_shipped_one(node: TestClient) -> None:
    assert _pair(_search(node, "modality=SPECT")) == (13, 1)  # ST only, by default
    hyper = json.loads(json.dumps(shipped(HYPERONTOLOGY)))
    dcm = next(g for g in hyper["group"] if g["source"].endswith("/DCM"))
    dcm["element"].append(
        {
            "code": "CT",
            "target": [{"code": "IMG1000061", "equivalence": "inexact", "comment": "a site that files SPECT/CT as CT"}],
        }
    )
    assert node.post("/fhir/ConceptMap", json=hyper).status_code == 201  # a new resource, same url: it wins
    assert _pair(_search(node, "modality=SPECT")) == (13, 5)
    api = json.loads(json.dumps(shipped(FOCUS_API)))
    api["group"][0]["element"].append(
        {"code": "diverse", "target": [{"code": "COM1001288", "equivalence": "equivalent"}]}
    )
    assert node.put(f"/fhir/ConceptMap/{api['id']}", json=api).status_code in (200, 201)
    assert _pair(_search(node, "gender=diverse")) == _pair(_search(node, "gender=other"))


def test_shipped_concept_maps_are_valid_r4_and_can_be_loaded_into_the_store(node: TestClient) -> None:
    from fhir_bridge.spec.validator import validator

    for url in CONCEPT_MAPS:
        resource = shipped(url)
        assert validator().validate(resource, "ConceptMap", strict=True) == []  # R4 4.0.1, warnings included
        created = node.put(f"/fhir/ConceptMap/{resource['id']}", json=resource)
        assert created.status_code in (200, 201), created.text  # the server validates against R4
        assert node.get(f"/fhir/ConceptMap?url={url}&_summary=count").json()["total"] == 1
    assert _pair(_search(node, "")) == (13, 14)  # the stored copies answer as the shipped ones did


@pytest.fixture
def guarded(database_url: str) -> Iterator[tuple[TestClient, int]]:
    """A node with a threshold of 3 (the small-count rule)."""
    app = _app(database_url, catalogue_min_count=3)
    with TestClient(app) as client:
        _load(client)
        yield client, 3
    app.state.services.close()


def test_small_counts_leave_the_dataset_out(guarded: tuple[TestClient, int]) -> None:
    node, _ = guarded
    assert _pair(_search(node, "")) == (13, 14)
    assert _pair(_search(node, "gender=other")) is None  # one subject
    assert _pair(_search(node, "modality=PET")) is None  # 13 subjects, but the studies are one patient's
    assert _pair(_search(node, "diagnosis=SNOMEDCT363358000")) is None  # two subjects
    assert _pair(_search(node, "gender=female&modality=MR&bodyPart=breast&manufacturer=Siemens")) == (5, 3)
    beacon = node.post("/eucaim/beacon/collections", json=_beacon_body(_filters("modality=PET"))).json()
    assert beacon["responseSummary"] == {"exists": False, "numTotalResults": 0}


def test_laplace_noise_is_the_same_for_the_same_question_through_either_door(database_url: str) -> None:
    app = _app(database_url, eucaim_epsilon=0.2)
    with TestClient(app) as node:
        _load(node)
        noisy = {}
        for query, expected in EXPECTED:
            first = _pair(_search(node, query))
            assert _pair(_search(node, query)) == first  # asking again reveals nothing new
            beacon = node.post("/eucaim/beacon/collections", json=_beacon_body(_filters(query))).json()
            assert beacon["response"]["collections"] == _search(node, query)["collections"]
            assert (first is None) == (expected is None)  # suppression decides on the true counts
            if first and expected:
                noisy[query] = (first, expected)
        assert any(found != true for found, true in noisy.values())  # noise of scale 5 moves some counts
        assert all(found[0] >= 0 and found[1] >= 0 for found, _ in noisy.values())
    app.state.services.close()


def test_laplace_noise_needs_the_site_secret(database_url: str) -> None:
    from fhir_bridge.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="site secret"):
        create_app(Settings(database_url=database_url, pseudonymise=False, pseudonym_key=None, eucaim_epsilon=1.0))


def test_federated_search_needs_its_own_scope_and_is_audited(database_url: str) -> None:
    from sqlalchemy import select

    from fhir_bridge.audit.tables import AUDIT

    app = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    focus, other = ec_key("focus-1"), ec_key("other-1")
    registry = ClientRegistry(app.state.services.engines)
    registry.add("focus", "system/FederatedSearch.s", jwks=focus.jwks(), jwks_url=None)
    registry.add("reader", "system/Patient.rs system/ImagingStudy.rs", jwks=other.jwks(), jwks_url=None)
    with TestClient(app) as node:
        token = bearer(node, "focus", focus, "system/FederatedSearch.s")
        body = FOCUS["beacon"]["tests"]["FIRST_BODY"]
        assert node.get("/eucaim/search?gender=male").status_code == 401
        assert node.post("/eucaim/beacon/collections", json=body).status_code == 401
        assert node.get("/eucaim/search?gender=male", headers=token).status_code == 200
        assert node.post("/eucaim/beacon/collections", json=body, headers=token).status_code == 200
        assert node.get("/fhir/Patient", headers=token).status_code == 403  # counts only, no patient-level search
        reader = bearer(node, "reader", other, "system/Patient.rs system/ImagingStudy.rs")
        assert node.get("/eucaim/search", headers=reader).status_code == 403
        assert node.get("/eucaim/beacon/filtering_terms").status_code == 200  # describing the service is public
        with app.state.services.audit_log.engines.reader.connect() as connection:
            rows = connection.execute(select(AUDIT).order_by(AUDIT.c.id)).all()
    trail = [(r.client_id, r.path, r.status) for r in rows if r.path.startswith("/eucaim")]
    assert trail == [
        (None, "/eucaim/search", 401),
        (None, "/eucaim/beacon/collections", 401),
        ("focus", "/eucaim/search", 200),
        ("focus", "/eucaim/beacon/collections", 200),
        ("reader", "/eucaim/search", 403),
    ]
    beacon_row = next(r for r in rows if r.path == "/eucaim/beacon/collections" and r.status == 200)
    assert "diagnosis=CLIN1000075" in beacon_row.detail  # what was asked, though it came in the body
    app.state.services.close()
