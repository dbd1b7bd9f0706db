"""Property test: search results equal a straightforward in-memory evaluation of the same query.

Hypothesis draws a small population of Patients and a query (token, string, date with prefixes,
modifiers, OR-ed values, AND-ed parameters); the server's answer must be exactly the set that a
plain Python reading of the FHIR search rules selects. Each drawn population is tagged with its
own ``_tag`` so that one store serves every example.
"""

from __future__ import annotations

import calendar
import itertools
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TAG_SYSTEM = "urn:fhir-bridge:test-run"
SYSTEMS = ["urn:oid:1.1", "urn:oid:2.2"]
FAMILIES = ["Müller", "Muller", "Smith", "Smithson", "de la Cruz", "O'Brien", "Ng"]
_runs = itertools.count()

dates = st.builds(
    lambda y, m, d, precision: (
        f"{y:04d}" if precision == 0 else f"{y:04d}-{m:02d}" if precision == 1 else f"{y:04d}-{m:02d}-{d:02d}"
    ),
    st.integers(1990, 1991),  # few distinct values, so that boundaries meet often
    st.sampled_from([1, 2, 12]),
    st.sampled_from([1, 15, 28]),
    st.sampled_from([0, 1, 2]),
)
patients = st.lists(
    st.fixed_dictionaries(
        {
            "gender": st.sampled_from(["male", "female", "other", None]),
            "family": st.sampled_from([*FAMILIES, None]),
            "birthDate": st.one_of(st.none(), dates),
            "identifier": st.one_of(st.none(), st.tuples(st.sampled_from(SYSTEMS), st.sampled_from(["a", "b", "c"]))),
        }
    ),
    min_size=4,
    max_size=12,
)
criteria_kinds = [
    st.tuples(st.just("gender"), st.lists(st.sampled_from(["male", "female", "other"]), min_size=1, max_size=2)),
    st.tuples(st.just("gender:not"), st.lists(st.sampled_from(["male", "female"]), min_size=1, max_size=1)),
    st.tuples(
        st.just("identifier"),
        st.lists(st.sampled_from(["a", "b", "urn:oid:1.1|a", "urn:oid:2.2|c", "urn:oid:1.1|"]), min_size=1, max_size=2),
    ),
    st.tuples(
        st.sampled_from(["family", "family:exact", "family:contains"]),
        st.lists(
            st.sampled_from(["mul", "Müller", "smith", "SMITH", "Smithson", "son", "cruz", "la", "o'b", "n"]),
            min_size=1,
            max_size=2,
        ),
    ),
    st.tuples(
        st.just("birthdate"),
        st.lists(
            st.tuples(st.sampled_from(["", "eq", "ne", "lt", "gt", "le", "ge", "sa", "eb"]), dates),
            min_size=1,
            max_size=2,
        ),
    ),
]
queries = st.lists(st.one_of(*criteria_kinds), min_size=1, max_size=3)


# the in-memory reading of the FHIR R4 search rules -------------------------------------------
def _span(text: str) -> tuple[datetime, datetime]:
    """[start, end) of a partial date, in UTC."""
    parts = [int(p) for p in text.split("-")]
    start = datetime(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1, tzinfo=UTC)
    if len(parts) == 1:
        return start, start.replace(year=start.year + 1)
    if len(parts) == 2:
        return start, start + timedelta(days=calendar.monthrange(parts[0], parts[1])[1])
    return start, start + timedelta(days=1)


def _date_matches(value: str | None, prefix: str, searched: str) -> bool:
    if value is None:
        return False  # a resource without the value matches no date search, ne included
    low, high = _span(value)
    search_low, search_high = _span(searched)
    contained = low >= search_low and high <= search_high
    return {
        "": contained,
        "eq": contained,
        "ne": not contained,
        "gt": high > search_high,
        "lt": low < search_low,
        "ge": high > search_high or contained,
        "le": low < search_low or contained,
        "sa": low >= search_high,
        "eb": high <= search_low,
    }[prefix]


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _matches(patient: dict, name: str, values: list) -> bool:
    if name == "gender":
        return patient["gender"] in values
    if name == "gender:not":
        return patient["gender"] not in values
    if name == "identifier":
        identifier = patient["identifier"]
        if identifier is None:
            return False
        system, code = identifier
        return any(
            (v == code) if "|" not in v else (v.split("|")[0] == system and v.split("|")[1] in ("", code))
            for v in values
        )
    if name.startswith("family"):
        family = patient["family"]
        if family is None:
            return False
        if name == "family:exact":
            return family in values
        if name == "family:contains":
            return any(_fold(v) in _fold(family) for v in values)
        return any(_fold(family).startswith(_fold(v)) for v in values)
    return any(_date_matches(patient["birthDate"], prefix, date) for prefix, date in values)


def _query_string(criteria: list) -> list[tuple[str, str]]:
    parameters = []
    for name, values in criteria:
        if name == "birthdate":
            parameters.append((name, ",".join(f"{prefix}{date}" for prefix, date in values)))
        else:
            parameters.append((name, ",".join(values)))
    return parameters


def _resource(patient: dict, tag: str) -> dict:
    resource: dict = {"resourceType": "Patient", "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}
    if patient["gender"]:
        resource["gender"] = patient["gender"]
    if patient["family"]:
        resource["name"] = [{"family": patient["family"]}]
    if patient["birthDate"]:
        resource["birthDate"] = patient["birthDate"]
    if patient["identifier"]:
        resource["identifier"] = [{"system": patient["identifier"][0], "value": patient["identifier"][1]}]
    return resource


@pytest.mark.slow  # property-based: 200 drawn populations and queries per database
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(population=patients, criteria=queries)
def test_search_agrees_with_in_memory_evaluation(client, population, criteria):
    tag = f"run-{next(_runs)}"
    entries = [{"resource": _resource(p, tag), "request": {"method": "POST", "url": "Patient"}} for p in population]
    result = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}).json()
    ids = [e["response"]["location"].split("/")[1] for e in result["entry"]]
    expected = {ids[i] for i, p in enumerate(population) if all(_matches(p, n, v) for n, v in criteria)}
    parameters = [*_query_string(criteria), ("_tag", f"{TAG_SYSTEM}|{tag}"), ("_count", "100")]
    bundle = client.get("/fhir/Patient", params=parameters).json()
    assert not [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"], bundle
    found = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert found == expected, (criteria, population)
