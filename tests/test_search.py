"""Search over the spec-derived indexes, per parameter type, with the spec's own example resources."""

from __future__ import annotations

import pytest

from tests.conftest import example


@pytest.fixture
def loaded(client):
    """The spec's Patient, ImagingStudy and Observation examples, with their references satisfied."""
    patient = example("Patient-example")
    patient.pop("managingOrganization")
    client.put("/fhir/Patient/example", json=patient)
    client.put("/fhir/Patient/dicom", json={"resourceType": "Patient", "id": "dicom", "gender": "female"})
    client.put(
        "/fhir/Encounter/example",
        json={"resourceType": "Encounter", "id": "example", "status": "finished", "class": {"code": "AMB"}},
    )
    study = example("ImagingStudy-example")
    assert client.put(f"/fhir/ImagingStudy/{study['id']}", json=study).status_code == 201
    observation = example("Observation-example")
    assert client.put(f"/fhir/Observation/{observation['id']}", json=observation).status_code == 201, observation
    return client


def ids(client, query: str, resource_type: str = "Patient") -> list[str]:
    bundle = client.get(f"/fhir/{resource_type}?{query}").json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("identifier=urn:oid:1.2.36.146.595.217.0.1|12345", ["example"]),
        ("identifier=12345", ["example"]),
        ("identifier=urn:oid:1.2.36.146.595.217.0.1|", ["example"]),
        ("identifier=other-system|12345", []),
        ("identifier=|12345", []),
        ("gender=male", ["example"]),
        ("gender=female", ["dicom"]),
        ("gender=male,female", ["dicom", "example"]),
        ("gender:not=male", ["dicom"]),
        ("active=true", ["example"]),
    ],
)
def test_token_search(loaded, query, expected):
    assert ids(loaded, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("identifier=s|a,s|b,t|c", ["a", "b", "c"]),  # two systems: an IN list each
        ("identifier=s|a,s|zz,t|zz", ["a"]),
        ("identifier=b,c", ["b", "c"]),  # any system
        ("identifier=s|,|nosys", ["a", "b", "nosys"]),  # system only, no system: matched one by one
        ("identifier=t|a,s|c", []),  # a code under the wrong system does not match
        ("identifier:not=s|a,t|c", ["b", "nosys"]),
    ],
)
def test_token_values_ored_across_systems(client, query, expected):
    """Comma-separated token values compile to one IN list per system: the same answers as ORed terms."""
    for resource_id, identifier in [
        ("a", ("s", "a")),
        ("b", ("s", "b")),
        ("c", ("t", "c")),
        ("nosys", (None, "nosys")),
    ]:
        system, value = identifier
        body = {"resourceType": "Patient", "id": resource_id, "identifier": [{"value": value}]}
        if system:
            body["identifier"][0]["system"] = system
        assert client.put(f"/fhir/Patient/{resource_id}", json=body).status_code == 201
    assert ids(client, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("family=chalm", ["example"]),
        ("family=CHALMERS", ["example"]),
        ("family=halmers", []),
        ("family:contains=halm", ["example"]),
        ("family:exact=Chalmers", ["example"]),
        ("family:exact=chalmers", []),
        ("name=jim", ["example"]),
        ("address-city=pleasant", ["example"]),
        ("given=peter&family=windsor", ["example"]),
        ("given=peter&family=nobody", []),
    ],
)
def test_string_search(loaded, query, expected):
    assert ids(loaded, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=1974-12-25", ["example"]),
        ("birthdate=1974", ["example"]),
        ("birthdate=1974-12", ["example"]),
        ("birthdate=1975", []),
        ("birthdate=gt1974-12-24", ["example"]),
        ("birthdate=gt1974-12-25", []),
        ("birthdate=ge1974-12-25", ["example"]),
        ("birthdate=lt1974-12-26", ["example"]),
        ("birthdate=lt1974-12-25", []),
        ("birthdate=le1974-12-25", ["example"]),
        ("birthdate=ne1974-12-25", []),
        ("birthdate=sa1974-12-24", ["example"]),
        ("birthdate=eb1974-12-26", ["example"]),
        ("birthdate=eb1974-12-25", []),
    ],
)
def test_date_search_with_prefixes(loaded, query, expected):
    assert ids(loaded, query) == expected


def test_date_search_on_date_time_with_timezone(loaded):
    # ImagingStudy-example started 2011-01-01T11:01:20+03:00, that is 08:01:20Z
    assert ids(loaded, "started=2011-01-01", "ImagingStudy") == ["example"]
    assert ids(loaded, "started=ge2011-01-01T08:01:20Z", "ImagingStudy") == ["example"]
    assert ids(loaded, "started=gt2011-01-01T08:01:21Z", "ImagingStudy") == []
    assert ids(loaded, "started=lt2011-01-01T11:00:00%2B03:00", "ImagingStudy") == []


def test_invalid_date_is_400(loaded):
    response = loaded.get("/fhir/Patient?birthdate=christmas")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["birthdate"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("subject=Patient/dicom", ["example"]),
        ("patient=dicom", ["example"]),
        ("subject:Patient=dicom", ["example"]),
        ("subject:Group=dicom", []),
        ("subject=Patient/example", []),
        ("modality=http://dicom.nema.org/resources/ontology/DCM|CT", ["example"]),
        ("modality=MR", []),
        ("bodysite=http://snomed.info/sct|67734004", ["example"]),
        ("dicom-class=urn:oid:1.2.840.10008.5.1.4.1.1.2", ["example"]),
        ("series=2.16.124.113543.6003.2588828330.45298.17418.2723805630", ["example"]),
        ("encounter:missing=true", ["example"]),
        ("encounter:missing=false", []),
        ("subject:missing=false", ["example"]),
        ("basedon:missing=true", ["example"]),
    ],
)
def test_imaging_study_search(loaded, query, expected):
    assert ids(loaded, query, "ImagingStudy") == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("value-quantity=185|http://unitsofmeasure.org|[lb_av]", ["example"]),
        ("value-quantity=185", ["example"]),
        ("value-quantity=gt180", ["example"]),
        ("value-quantity=lt180", []),
        ("value-quantity=185||kg", []),
        ("code=http://loinc.org|29463-7", ["example"]),
        ("code:text=body weight", ["example"]),
        ("category=vital-signs", ["example"]),
        ("date=2016", ["example"]),
    ],
)
def test_observation_quantity_and_code_search(loaded, query, expected):
    assert ids(loaded, query, "Observation") == expected


def test_uri_search(client):
    client.post("/fhir/Patient", json={"resourceType": "Patient", "meta": {"profile": ["http://example.org/fhir/P"]}})
    assert len(ids(client, "_profile=http://example.org/fhir/P")) == 1
    assert len(ids(client, "_profile:below=http://example.org/fhir")) == 1
    assert ids(client, "_profile=http://example.org/fhir") == []


def test_id_and_last_updated(loaded):
    assert ids(loaded, "_id=example,dicom") == ["dicom", "example"]
    assert ids(loaded, "_lastUpdated=gt2000-01-01") == ["dicom", "example"]
    assert ids(loaded, "_lastUpdated=lt2000-01-01") == []


def test_count_and_next_links_page_through_all_matches(client):
    created = {
        client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "other"}).json()["id"] for _ in range(7)
    }
    seen: list[str] = []
    url = "/fhir/Patient?gender=other&_count=3"
    while url:
        bundle = client.get(url).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(created)


def test_total_only_when_asked(loaded):
    assert "total" not in loaded.get("/fhir/Patient").json()
    assert loaded.get("/fhir/Patient?_total=accurate").json()["total"] == 2
    assert loaded.get("/fhir/Patient?_count=0").json()["total"] == 2


def test_unknown_parameter_is_a_warning_or_strict_400(loaded):
    bundle = loaded.get("/fhir/Patient?shoe-size=42").json()
    assert len([e for e in bundle["entry"] if e["search"]["mode"] == "match"]) == 2
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert "shoe-size" in outcome["resource"]["issue"][0]["diagnostics"]
    strict = loaded.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["shoe-size"]


def test_post_search_equals_get_search(loaded):
    response = loaded.post(
        "/fhir/Patient/_search", content="gender=male", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert [e["resource"]["id"] for e in response.json()["entry"]] == ["example"]


def test_system_search_spans_types(loaded):
    bundle = loaded.get("/fhir?_id=example").json()
    assert sorted(e["resource"]["resourceType"] for e in bundle["entry"]) == [
        "Encounter",
        "ImagingStudy",
        "Observation",
        "Patient",
    ]
    posted = loaded.post(
        "/fhir/_search", content="_id=dicom", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert [e["resource"]["id"] for e in posted.json()["entry"]] == ["dicom"]


def test_search_sees_current_versions_only(client):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    client.put(f"/fhir/Patient/{created['id']}", json=dict(created, gender="female"))
    assert ids(client, "gender=male") == []
    assert ids(client, "gender=female") == [created["id"]]


def test_bad_count_is_400_and_large_count_is_capped(loaded):
    assert loaded.get("/fhir/Patient?_count=many").status_code == 400
    bundle = loaded.get("/fhir/Patient?_count=100000").json()
    assert len(bundle["entry"]) == 2


def test_search_of_unknown_type_is_404(client):
    """http.html: a resource type the server does not know answers 404."""
    response = client.get("/fhir/Spaceship?name=x")
    assert response.status_code == 404
    assert "Spaceship" in response.json()["issue"][0]["diagnostics"]


def test_self_link_lists_only_the_parameters_applied(loaded):
    bundle = loaded.get("/fhir/Patient?gender=male&foo=bar&_sort=family&_contained=true&_count=5").json()
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert self_link == "http://testserver/fhir/Patient?gender=male&_sort=family&_count=5"
    warnings = [i["diagnostics"] for i in bundle["entry"][-1]["resource"]["issue"]]
    assert any("_contained" in w for w in warnings)
    assert any("foo" in w for w in warnings)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("probability=0.8", ["high"]),
        ("probability=0.80", ["high"]),
        ("probability=0.81", []),
        ("probability=gt0.5", ["high"]),
        ("probability=lt0.5", ["low"]),
        ("probability=ge0.2", ["high", "low"]),
        ("probability=le0.2", ["low"]),
        ("probability=ne0.2", ["high"]),
    ],
)
def test_number_search(client, query, expected):
    client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"})
    for rid, probability in (("high", 0.8), ("low", 0.2)):
        risk = {
            "resourceType": "RiskAssessment",
            "id": rid,
            "status": "final",
            "subject": {"reference": "Patient/p"},
            "prediction": [{"probabilityDecimal": probability}],
        }
        assert client.put(f"/fhir/RiskAssessment/{rid}", json=risk).status_code == 201
    assert ids(client, query, "RiskAssessment") == expected


def test_a_bounded_date_range_finds_wide_values_too(settings) -> None:  # type: ignore[no-untyped-def]
    """A range search is bounded below by the widest indexed value (idx_date_width): a study that
    started "in 2024" (a year wide) overlaps March 2024 and must be found, also in a store made before
    the widths were recorded (the baseline migration that adopts such a store records them)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import delete, text

    from fhir_bridge import create_app
    from fhir_bridge.store.migration import VERSION_TABLE
    from fhir_bridge.store.tables import DATE_WIDTH

    started = {"year": "2024", "march": "2024-03-15T10:00:00Z", "february": "2024-02-10T10:00:00Z"}
    march = "started=ge2024-03-01&started=lt2024-04-01&modality=CT"
    app = create_app(settings)
    with TestClient(app) as client:
        client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"})
        for name, when in started.items():
            study = {
                "resourceType": "ImagingStudy",
                "id": name,
                "status": "available",
                "subject": {"reference": "Patient/p"},
                "started": when,
                "series": [
                    {
                        "uid": f"2.25.{len(name)}",
                        "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                    }
                ],
            }
            assert client.put(f"/fhir/ImagingStudy/{name}", json=study).status_code == 201
        assert ids(client, march, "ImagingStudy") == ["march", "year"]
        with app.state.services.engines.writer.begin() as connection:  # as a store of before migrations
            connection.execute(delete(DATE_WIDTH))
            connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    app.state.services.close()
    restarted = create_app(settings.model_copy(update={"upgrade_schema": True}))
    with TestClient(restarted) as client:
        assert ids(client, march, "ImagingStudy") == ["march", "year"]
    restarted.state.services.close()


def test_system_search_type_keeps_the_named_types_only(client):
    """search.html#_type: a system search with _type matches resources of those types only; a name that
    is no resource type is a 400, never a search of every type."""
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()
    client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "x"})
    found = client.get("/fhir", params={"_type": "Patient"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [patient["id"]]
    both = client.get("/fhir", params={"_type": "Patient,Organization", "_total": "accurate"}).json()
    assert both["total"] == 2
    assert client.get("/fhir", params={"_type": "Patient,NotAType"}).status_code == 400


def test_a_search_without_matches_has_no_entry_and_a_paged_one_a_first_link(client):
    """json.html: no empty arrays; bundle.html#paging: the first link is the first page as of the same
    commit as the page it is on (no previous/last: keyset paging over any _sort cannot give them cheaply)."""
    assert "entry" not in client.get("/fhir/Patient", params={"family": "nobody"}).json()
    counted = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert counted["total"] == 0 and "entry" not in counted
    ids = [client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"] for _ in range(3)]
    first = client.get("/fhir/Patient", params={"_count": 2, "_sort": "_id"}).json()
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert set(links) == {"self", "first", "next"}
    second = client.get(links["next"]).json()
    client.post("/fhir/Patient", json={"resourceType": "Patient", "id": "later"})
    back = client.get({link["relation"]: link["url"] for link in second["link"]}["first"]).json()
    assert [e["resource"]["id"] for e in back["entry"]] == [e["resource"]["id"] for e in first["entry"]]
    assert sorted(e["resource"]["id"] for page in (first, second) for e in page["entry"]) == sorted(ids)
