"""Searches that differ only in their values share one compiled statement (search.shapes), and still
each return their own matches; searches of different shapes never share one."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import Select

from fhir_bridge.search.compiler import SEARCH_SHAPES, compile_search
from fhir_bridge.search.query import parse_search
from fhir_bridge.search.runner import search_page
from fhir_bridge.search.shapes import ShapeCache, parametrize, placeholders


def _compiled(resource_type: str, search: str, at_seq: int = 7, after: dict | None = None) -> tuple[Select, dict]:
    parameters = [tuple(pair.split("=", 1)) for pair in search.split("&")]
    query = parse_search(resource_type, parameters)
    query.at_seq, query.after = at_seq, after
    return compile_search(query)


def _ids(client, query: str, resource_type: str = "Patient") -> list[str]:
    bundle = client.get(f"/fhir/{resource_type}?{query}").json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


@pytest.fixture
def patients(client):
    for pid, system, value, gender, born, family, source in [
        ("a", "s", "1", "male", "2001", "Smith", "http://x.org/src/one"),
        ("b", "s", "2", "female", "2008", "Smythe", "http://x.org/src/two"),
        ("c", "t", "1", "male", "2015", "O_Brien%", "http://y.org/src"),
    ]:
        patient = {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": born}
        patient["identifier"] = [{"system": system, "value": value}]
        patient["name"], patient["meta"] = [{"family": family}], {"source": source}
        assert client.put(f"/fhir/Patient/{pid}", json=patient).status_code == 201
        study = {"resourceType": "ImagingStudy", "id": f"study-{pid}", "status": "available"}
        study["subject"] = {"reference": f"Patient/{pid}"}
        assert client.put(f"/fhir/ImagingStudy/study-{pid}", json=study).status_code == 201
    return client


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("identifier=s|1", "identifier=t|2"),
        ("identifier=s|1,s|2", "identifier=t|3,t|4"),
        ("identifier=s|1&gender=male", "identifier=t|9&gender=female"),
        ("_id=a,b&_sort=-_lastUpdated&_count=5", "_id=c,d&_sort=-_lastUpdated&_count=50"),
        ("gender:missing=true", "gender:missing=TRUE"),
    ],
)
def test_searches_differing_in_values_share_one_statement(first, second):
    (statement, values), (other, other_values) = _compiled("Patient", first), _compiled("Patient", second, 8)
    assert statement is other
    assert values != other_values


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("family=a", "family=Bob"),
        ("family=a,b", "family=c,O_Brien%"),
        ("family:exact=A", "family:exact=Bob"),
        ("family:contains=a", "family:contains=b_%"),
        ("identifier=s|1&family=a", "identifier=t|2&family=zz"),
        ("_source=http://x", "_source=http://y"),
        ("_source:below=http://x", "_source:below=http://y/z"),
        ("_source:above=http://x/y", "_source:above=http://z"),
    ],
)
def test_string_and_uri_searches_differing_in_values_share_one_statement(first, second):
    (statement, values), (other, other_values) = _compiled("Patient", first), _compiled("Patient", second, 8)
    assert statement is other
    assert values != other_values


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("family=a", "family:exact=a"),
        ("family=a", "family:contains=a"),
        ("family:exact=a", "family:contains=a"),
        ("family=a", "family=a,b"),
        ("_source=http://x", "_source:below=http://x"),
        ("_source:below=http://x", "_source:above=http://x"),
    ],
)
def test_string_and_uri_searches_of_different_matches_do_not_share(first, second):
    assert _compiled("Patient", first)[0] is not _compiled("Patient", second)[0]


@pytest.mark.parametrize(
    ("resource_type", "first", "second", "shared"),
    [
        ("Observation", "value-quantity=gt5", "value-quantity=gt7.25", True),
        ("Observation", "value-quantity=5", "value-quantity=eq1e2", True),
        ("Observation", "value-quantity=ap5", "value-quantity=ap100", True),
        ("Observation", "value-quantity=5|http://unitsofmeasure.org|mg", "value-quantity=7|urn:u|g", True),
        ("Observation", "value-quantity=5||mg", "value-quantity=lt7||g", False),  # prefix
        ("Observation", "value-quantity=5||mg", "value-quantity=7||g", True),
        ("Observation", "value-quantity=5||mg", "value-quantity=5|urn:u|mg", False),  # a system or not
        ("Observation", "value-quantity=5", "value-quantity=5||mg", False),  # a unit or not
        ("RiskAssessment", "probability=gt0.5", "probability=gt0.25", True),
        ("RiskAssessment", "probability=gt0.5", "probability=ge0.5", False),
        ("RiskAssessment", "probability=0.5,0.7", "probability=0.1,0.2", True),
    ],
)
def test_number_and_quantity_searches_share_by_prefix_and_unit(resource_type, first, second, shared):
    assert (_compiled(resource_type, first)[0] is _compiled(resource_type, second)[0]) == shared


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("value-quantity=5", ["mg5"]),
        ("value-quantity=5.0", ["mg5"]),
        ("value-quantity=7.25", ["g7"]),
        ("value-quantity=7.2", []),
        ("value-quantity=gt5", ["g7", "kg100"]),
        ("value-quantity=ge5", ["g7", "kg100", "mg5"]),
        ("value-quantity=lt7.25", ["mg5"]),
        ("value-quantity=ne5", ["g7", "kg100"]),
        ("value-quantity=ap100", ["kg100"]),
        ("value-quantity=ap7", ["g7"]),
        ("value-quantity=ge1||mg", ["mg5"]),
        ("value-quantity=ge1|http://unitsofmeasure.org|g", ["g7"]),
        ("value-quantity=ge1|urn:other|g", []),
        ("value-quantity=5,100", ["kg100", "mg5"]),
        ("value-quantity=le5||mg,gt50||kg", ["kg100", "mg5"]),
    ],
)
def test_quantity_searches_of_a_shared_shape_return_their_own_matches(client, query, expected):
    for oid, value, unit in (("mg5", 5, "mg"), ("g7", 7.25, "g"), ("kg100", 100, "kg")):
        observation = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}}
        observation["valueQuantity"] = {"value": value, "system": "http://unitsofmeasure.org", "code": unit}
        assert client.put(f"/fhir/Observation/{oid}", json=observation).status_code == 201
    assert _ids(client, query, "Observation") == expected


def test_reference_searches_differing_in_values_share_one_statement():
    first, values = _compiled("ImagingStudy", "patient=Patient/1")
    second, other_values = _compiled("ImagingStudy", "patient=Patient/2")
    assert first is second and values != other_values


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("identifier=s|1", "identifier:not=s|1"),  # modifier
        ("identifier=s|1", "identifier=s|1,s|2"),  # number of values
        ("identifier=s|1,s|2", "identifier=s|1,t|2"),  # one system's IN list or two systems
        ("identifier=s|1", "identifier=|1"),  # a system or none
        ("identifier=s|1", "identifier=1"),  # a system or any
        ("identifier=s|1", "identifier=s|"),  # a code or any
        ("gender:missing=true", "gender:missing=false"),
        ("identifier=s|1", "identifier=s|1&_sort=gender"),  # _sort
        ("identifier=s|1&_sort=gender", "identifier=s|1&_sort=-gender"),
        ("identifier=s|1", "gender=s|1"),  # parameter
        ("gender=male&identifier=s|1", "identifier=s|1&gender=male"),  # order of the clauses
    ],
)
def test_searches_of_different_shapes_do_not_share(first, second):
    assert _compiled("Patient", first)[0] is not _compiled("Patient", second)[0]


def test_searches_on_types_whose_sql_holds_their_values_are_not_shared():
    # composites compile their values into the SQL: each search gets its own statement
    for resource_type, search in (("Observation", "code-value-quantity=http://loinc.org|718-7$gt5"),):
        statement, values = _compiled(resource_type, search)
        assert values == {} and statement is not _compiled(resource_type, search)[0]
    statement, values = _compiled("ImagingStudy", "patient.gender=male")  # a chain
    assert values == {}


@pytest.mark.parametrize(
    ("resource_type", "first", "second"),
    [
        ("Patient", "birthdate=ge2001", "birthdate=ge2010-05-04"),
        ("Patient", "birthdate=2001,2003", "birthdate=1999,2000-02"),
        ("Patient", "birthdate=ap2001", "birthdate=ap1980"),
        ("Patient", "_lastUpdated=gt2020", "_lastUpdated=gt2021-06-01T10:00:00Z"),
        ("Patient", "identifier=s|1&_lastUpdated=le2020", "identifier=t|2&_lastUpdated=le2024"),
        (
            "ImagingStudy",
            "modality=CT&started=ge2024-03-01&started=lt2024-04-01",
            "modality=MR&started=ge2020-05-01&started=lt2020-06-01",
        ),
        ("ImagingStudy", "started=ge2024-03-01&started=lt2024-04-01", "started=ge2015-01-01&started=lt2015-12-31"),
        (
            "ImagingStudy",
            "modality=CT&started=ge2010-01-01&started=lt2020-01-01",
            "modality=MR&started=ge2000-01-01&started=lt2005-01-01",
        ),
    ],
)
def test_date_searches_differing_in_values_share_one_statement(resource_type, first, second):
    (statement, values), (other, other_values) = _compiled(resource_type, first), _compiled(resource_type, second, 8)
    assert statement is other
    assert values != other_values


@pytest.mark.parametrize(
    ("resource_type", "first", "second"),
    [
        ("Patient", "birthdate=ge2001", "birthdate=le2001"),  # prefix
        ("Patient", "birthdate=2001", "birthdate=eq2001"),  # no prefix is eq: the same, shared
        ("Patient", "birthdate=ge2001", "birthdate=ge2001,ge2002"),  # number of values
        ("Patient", "_lastUpdated=gt2020", "_lastUpdated=lt2020"),
        # a month drives the search, a decade is checked on the modality's candidates: another order
        (
            "ImagingStudy",
            "modality=CT&started=ge2024-03-01&started=lt2024-04-01",
            "modality=CT&started=ge2010-01-01&started=lt2020-01-01",
        ),
        # an empty value keeps the date criteria apart (not one range): another statement
        (
            "ImagingStudy",
            "modality=CT&started=ge2024-03-01&started=lt2024-04-01",
            "modality=CT&started=,ge2024-03-01&started=lt2024-04-01",
        ),
        ("ImagingStudy", "started=ge2024-03-01&started=lt2024-04-01", "started=gt2024-03-01&started=lt2024-04-01"),
    ],
)
def test_date_searches_of_different_shapes_do_not_share(resource_type, first, second):
    shared = _compiled(resource_type, first)[0] is _compiled(resource_type, second)[0]
    assert shared == (second == "birthdate=eq2001")


def _month(year: int, month: int) -> str:
    following = (year, month + 1) if month < 12 else (year + 1, 1)
    return f"started=ge{year}-{month:02d}-01&started=lt{following[0]}-{following[1]:02d}-01"


def test_date_searches_sharing_statements_return_their_own_matches(store):
    """Month and wider searches of a few shapes, interleaved so that each runs the statement another
    one compiled, return what the data holds: each study's modality and instant, filtered in Python,
    and what a statement compiled afresh for the search alone returns."""
    rng = random.Random(3)
    studies = {}
    with store.write() as session:
        for index in range(80):
            started = datetime(2019 + rng.randrange(3), rng.randrange(1, 13), rng.randrange(1, 29), 10, tzinfo=UTC)
            modality = rng.choice(("CT", "MR"))
            session.put(
                {
                    "resourceType": "ImagingStudy",
                    "id": f"s{index}",
                    "status": "available",
                    "started": started.isoformat().replace("+00:00", "Z"),
                    "series": [{"uid": f"1.2.{index}", "modality": {"system": "urn:dcm", "code": modality}}],
                },
                "PUT",
            )
            studies[f"s{index}"] = (modality, started)

    def expected(modality: str | None, low: datetime, high: datetime) -> list[str]:
        return sorted(
            sid for sid, (kind, started) in studies.items() if modality in (None, kind) and low <= started < high
        )

    def matches(search: str, fresh: bool) -> list[str]:
        if fresh:
            SEARCH_SHAPES.clear()
        query = parse_search(
            "ImagingStudy", [tuple(pair.split("=", 1)) for pair in search.split("&")], default_count=200
        )
        return sorted(version.res_id for version, _ in search_page(store, query))

    searches = []
    for year in (2019, 2020, 2021):
        for month in range(1, 13, 2):
            low = datetime(year, month, 1, tzinfo=UTC)
            high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            searches.append((f"modality=CT&{_month(year, month)}", expected("CT", low, high)))
            searches.append((_month(year, month), expected(None, low, high)))
        low, high = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 2, 1, 1, tzinfo=UTC)
        wide = f"started=ge{year}-01-01&started=lt{year + 2}-01-01"
        searches.append((f"modality=MR&{wide}", expected("MR", low, high)))
        after_june = expected("CT", datetime(year, 7, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))
        searches.append((f"modality=CT&started=gt{year}-06-30", after_june))
    rng.shuffle(searches)
    SEARCH_SHAPES.clear()
    assert any(expected_ids for _, expected_ids in searches)
    for search, expected_ids in searches:
        assert matches(search, fresh=False) == expected_ids, search
    assert SEARCH_SHAPES.hits >= len(searches) - 8  # a handful of shapes for every search
    for search, expected_ids in searches:
        assert matches(search, fresh=True) == expected_ids, search


def test_page_cursors_share_the_statement_of_their_shape():
    first = _compiled("Patient", "identifier=s|1&_sort=gender", after={"pk": 3, "k": ["male"]})
    second = _compiled("Patient", "identifier=s|2&_sort=gender", after={"pk": 9, "k": ["female"]})
    absent = _compiled("Patient", "identifier=s|2&_sort=gender", after={"pk": 9, "k": [None]})
    assert first[0] is second[0] and absent[0] is not first[0]
    assert {3, "male"} <= set(first[1].values()) and {9, "female"} <= set(second[1].values())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("identifier=s|1", ["a"]),
        ("identifier=s|2", ["b"]),
        ("identifier=t|1", ["c"]),
        ("identifier=1", ["a", "c"]),
        ("identifier=2", ["b"]),
        ("identifier=s|1,s|2", ["a", "b"]),
        ("identifier=t|1,t|2", ["c"]),
        ("identifier=s|1,t|1", ["a", "c"]),
        ("identifier:not=s|1", ["b", "c"]),
        ("identifier:not=t|1", ["a", "b"]),
        ("_id=a,b", ["a", "b"]),
        ("_id=b,c", ["b", "c"]),
        ("gender:missing=false", ["a", "b", "c"]),
        ("gender:missing=true", []),
        ("birthdate=ge2008", ["b", "c"]),
        ("birthdate=le2008", ["a", "b"]),
        ("birthdate=ge2001&birthdate=le2008", ["a", "b"]),
        ("birthdate=ge2008&birthdate=le2015", ["b", "c"]),
        ("birthdate=2001,2015", ["a", "c"]),
        ("birthdate=2008,2015", ["b", "c"]),
        ("birthdate=gt2001-06", ["a", "b", "c"]),  # 2001 reaches beyond June
        ("birthdate=gt2008-06", ["b", "c"]),
        ("birthdate=ne2008", ["a", "c"]),
        ("birthdate=ne2015", ["a", "b"]),
        ("birthdate=sa2001", ["b", "c"]),
        ("birthdate=eb2015", ["a", "b"]),
        ("identifier=s|1,s|2&birthdate=ge2008", ["b"]),
        ("identifier=s|1,s|2&birthdate=le2008", ["a", "b"]),
        ("_lastUpdated=gt2020-01-01", ["a", "b", "c"]),
        ("_lastUpdated=lt2020-01-01", []),
        ("family=smi", ["a"]),
        ("family=sm", ["a", "b"]),
        ("family=o_b", ["c"]),
        ("family=o%", []),
        ("family=x", []),
        ("family=smy,o_", ["b", "c"]),
        ("family:exact=Smith", ["a"]),
        ("family:exact=smith", []),
        ("family:contains=_b", ["c"]),
        ("family:contains=yth", ["b"]),
        ("family:contains=%", ["c"]),
        ("family:contains=m", ["a", "b"]),
        ("_source=http://x.org/src/one", ["a"]),
        ("_source=http://x.org/src", []),
        ("_source:below=http://x.org/src", ["a", "b"]),
        ("_source:below=http://y.org", ["c"]),
        ("_source:below=http://x.org/src/one", ["a"]),
        ("_source:above=http://x.org/src/two/more", ["b"]),
        ("_source:above=http://y.org/src/x", ["c"]),
        ("_source:above=http://z.org", []),
    ],
)
def test_each_search_of_a_shared_shape_returns_its_own_matches(patients, query, expected):
    assert _ids(patients, query) == expected


@pytest.mark.parametrize(("patient", "expected"), [("a", ["study-a"]), ("b", ["study-b"]), ("c", ["study-c"])])
def test_reference_searches_of_one_shape_return_their_own_matches(patients, patient, expected):
    assert _ids(patients, f"patient=Patient/{patient}", "ImagingStudy") == expected
    assert _ids(patients, f"subject:Patient={patient}", "ImagingStudy") == expected


def test_paging_through_a_shared_shape_returns_every_match_once(patients):
    for sort in ("_id", "-_id", "gender", "-birthdate"):
        seen, url = [], f"/fhir/Patient?identifier=s|1,s|2,t|1&_sort={sort}&_count=1"
        while url:
            bundle = patients.get(url.replace("http://testserver", "")).json()
            seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        assert sorted(seen) == ["a", "b", "c"], sort


def test_the_shape_cache_keeps_the_most_recently_used_shapes_only():
    cache = ShapeCache(size=2)
    statements = {name: _compiled("Patient", f"{name}=x")[0] for name in ("identifier", "gender", "language")}
    cache.put("identifier", statements["identifier"])
    cache.put("gender", statements["gender"])
    assert cache.get("identifier") is statements["identifier"]  # now the most recently used
    cache.put("language", statements["language"])
    assert len(cache) == 2
    assert cache.get("gender") is None
    assert cache.get("identifier") is statements["identifier"] and cache.get("language") is statements["language"]


def test_a_plan_splits_into_its_shape_and_its_values():
    shape, values = parametrize((7, None, ("a", True, ("b", 2.5))))
    assert shape == ("int", None, ("str", True, ("str", "float")))
    assert values == {"p0": 7, "p1": "a", "p2": "b", "p3": 2.5}
    bound = placeholders((7, None, ("a", True, ("b", 2.5))))
    assert [bound[0].key, bound[2][0].key, bound[2][2][1].key] == ["p0", "p1", "p3"] and bound[2][1] is True
    with pytest.raises(TypeError):
        parametrize(([1],))
