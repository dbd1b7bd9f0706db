"""Chains, reverse chains, _include/_revinclude, _sort, _summary/_elements, compartments,
composite parameters, :of-type, and paging pinned to one commit."""

from __future__ import annotations

import pytest

DCM = "http://dicom.nema.org/resources/ontology/DCM"
MRN = "urn:oid:1.2.3.4"


def patient(pid: str, family: str, gender: str, birth: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": MRN,
                "value": f"mrn-{pid}",
            }
        ],
        "name": [{"family": family}],
        "gender": gender,
        "birthDate": birth,
    }


def study(sid: str, subject: str, modality: str, started: str) -> dict:
    return {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{subject}"},
        "started": started,
        "modality": [{"system": DCM, "code": modality}],
        "series": [{"uid": f"1.2.{sid}", "modality": {"system": DCM, "code": modality}}],
    }


@pytest.fixture
def archive(client):
    """Three patients, four studies, a report per study and an observation."""
    people = [
        patient("ann", "Alvarez", "female", "1950-03-01"),
        patient("bob", "Brown", "male", "1962-07-15"),
        patient("cyd", "Carter", "female", "1971-11-30"),
    ]
    studies = [
        study("s1", "ann", "MR", "2024-01-10T09:00:00Z"),
        study("s2", "ann", "CT", "2024-02-11T09:00:00Z"),
        study("s3", "bob", "MR", "2023-05-01T09:00:00Z"),
        study("s4", "cyd", "CT", "2022-08-20T09:00:00Z"),
    ]
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in people + studies
    ]
    for s in studies:
        report = {
            "resourceType": "DiagnosticReport",
            "id": f"r-{s['id']}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
            "subject": s["subject"],
            "imagingStudy": [{"reference": f"ImagingStudy/{s['id']}"}],
        }
        entries.append({"resource": report, "request": {"method": "PUT", "url": f"DiagnosticReport/{report['id']}"}})
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1"}]},
        "subject": {"reference": "Patient/ann"},
        "valueQuantity": {"value": 23, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "33728-7"}]},
                "valueQuantity": {"value": 12, "system": "http://unitsofmeasure.org", "code": "mm"},
            }
        ],
    }
    entries.append({"resource": observation, "request": {"method": "PUT", "url": "Observation/o1"}})
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    return client


def ids(client, url: str, mode: str = "match") -> list[str]:
    bundle = client.get(url).json()
    assert bundle["resourceType"] == "Bundle", bundle
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"/fhir/ImagingStudy?subject:Patient.identifier={MRN}|mrn-ann", ["s1", "s2"]),
        ("/fhir/ImagingStudy?subject.gender=female", ["s1", "s2", "s4"]),
        ("/fhir/ImagingStudy?patient.family=brown", ["s3"]),
        ("/fhir/ImagingStudy?subject.gender=female&modality=CT", ["s2", "s4"]),
        ("/fhir/DiagnosticReport?imaging-study.modality=MR", ["r-s1", "r-s3"]),
        ("/fhir/DiagnosticReport?imaging-study.patient.gender=male", ["r-s3"]),
        ("/fhir/ImagingStudy?subject.gender=other", []),
    ],
)
def test_chained_search(archive, url, expected):
    assert sorted(ids(archive, url)) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/fhir/Patient?_has:ImagingStudy:subject:modality=MR", ["ann", "bob"]),
        ("/fhir/Patient?_has:ImagingStudy:subject:modality=CT&gender=female", ["ann", "cyd"]),
        ("/fhir/Patient?_has:ImagingStudy:patient:started=lt2023-01-01", ["cyd"]),
        ("/fhir/ImagingStudy?_has:DiagnosticReport:imaging-study:status=final&modality=MR", ["s1", "s3"]),
        ("/fhir/Patient?_has:ImagingStudy:subject:modality=PT", []),
    ],
)
def test_reverse_chained_search(archive, url, expected):
    assert sorted(ids(archive, url)) == expected


def test_invalid_reverse_chain_is_refused_when_strict(archive):
    nested = "/fhir/Patient?_has:DiagnosticReport:subject:_has:ImagingStudy:subject:modality=MR"
    assert archive.get(nested, headers={"Prefer": "handling=strict"}).status_code == 400  # nothing refers to reports
    nested_ok = "/fhir/Patient?_has:ImagingStudy:subject:_has:DiagnosticReport:imaging-study:status=final"
    assert sorted(ids(archive, nested_ok)) == ["ann", "bob", "cyd"]


def test_include_adds_referenced_resources_marked_include(archive):
    bundle = archive.get("/fhir/ImagingStudy?modality=CT&_include=ImagingStudy:subject").json()
    matches = sorted(e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match")
    included = sorted(e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert matches == ["s2", "s4"]
    assert included == ["ann", "cyd"]
    assert "_include=ImagingStudy%3Asubject" in bundle["link"][0]["url"]


def test_include_with_target_type_and_wildcard(archive):
    assert ids(archive, "/fhir/ImagingStudy?_id=s1&_include=ImagingStudy:subject:Group", "include") == []
    assert ids(archive, "/fhir/DiagnosticReport?_id=r-s1&_include=DiagnosticReport:*", "include") == ["ann", "s1"]


def test_revinclude_and_iterate(archive):
    assert sorted(ids(archive, "/fhir/Patient?_id=ann&_revinclude=ImagingStudy:subject", "include")) == ["s1", "s2"]
    iterated = ids(
        archive,
        "/fhir/Patient?_id=bob&_revinclude=ImagingStudy:subject&_revinclude:iterate=DiagnosticReport:imaging-study",
        "include",
    )
    assert sorted(iterated) == ["r-s3", "s3"]
    forward = ids(
        archive,
        "/fhir/DiagnosticReport?_id=r-s4&_include=DiagnosticReport:imaging-study&_include:iterate=ImagingStudy:subject",
        "include",
    )
    assert sorted(forward) == ["cyd", "s4"]


def test_include_must_start_from_the_searched_type(archive):
    response = archive.get("/fhir/Patient?_include=ImagingStudy:subject", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/fhir/Patient?_sort=family", ["ann", "bob", "cyd"]),
        ("/fhir/Patient?_sort=-family", ["cyd", "bob", "ann"]),
        ("/fhir/Patient?_sort=birthdate", ["ann", "bob", "cyd"]),
        ("/fhir/Patient?_sort=-birthdate", ["cyd", "bob", "ann"]),
        ("/fhir/Patient?_sort=gender,-family", ["cyd", "ann", "bob"]),
        ("/fhir/ImagingStudy?_sort=-started", ["s2", "s1", "s3", "s4"]),
        ("/fhir/ImagingStudy?_sort=modality,started", ["s4", "s2", "s3", "s1"]),
        ("/fhir/Patient?_sort=-_id", ["cyd", "bob", "ann"]),
    ],
)
def test_sort(archive, url, expected):
    assert ids(archive, url) == expected


def test_sorted_paging_visits_each_match_once_in_order(archive):
    for index in range(7):
        archive.put(f"/fhir/Patient/x{index}", json=patient(f"x{index}", f"Zed{index % 3}", "other", f"19{40 + index}"))
    url = "/fhir/Patient?_sort=-family,birthdate&_count=2"
    seen = []
    while url:
        bundle = archive.get(url).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    everyone = ids(archive, "/fhir/Patient?_sort=-family,birthdate&_count=100")
    assert seen == everyone
    assert len(seen) == len(set(seen)) == 10


def test_sort_puts_resources_without_the_value_last(archive):
    archive.put("/fhir/Patient/anon", json={"resourceType": "Patient", "id": "anon"})
    assert ids(archive, "/fhir/Patient?_sort=family")[-1] == "anon"
    assert ids(archive, "/fhir/Patient?_sort=-family")[-1] == "anon"


def test_paging_is_pinned_to_the_first_page(archive):
    first = archive.get("/fhir/Patient?_count=2").json()
    seen = [e["resource"]["id"] for e in first["entry"]]
    archive.put("/fhir/Patient/late", json=patient("late", "Late", "male", "1990"))
    archive.put("/fhir/Patient/cyd", json=patient("cyd", "Renamed", "female", "1971-11-30"))
    for doomed in ("DiagnosticReport/r-s4", "ImagingStudy/s4", "Patient/cyd"):
        assert archive.delete(f"/fhir/{doomed}").status_code == 200
    second = archive.get(next(link["url"] for link in first["link"] if link["relation"] == "next")).json()
    seen += [e["resource"]["id"] for e in second["entry"]]
    assert seen == ["ann", "bob", "cyd"]  # as of the first page: no "late", cyd still there
    assert second["entry"][0]["resource"]["name"][0]["family"] == "Carter"  # the version of that commit
    assert ids(archive, "/fhir/Patient") == ["ann", "bob", "late"]


@pytest.mark.parametrize(
    ("summary", "present", "absent"),
    [
        ("true", {"identifier", "name", "gender", "birthDate"}, set()),
        ("text", set(), {"name", "gender"}),
        ("data", {"name", "gender"}, {"text"}),
    ],
)
def test_summary(archive, summary, present, absent):
    archive.put(
        "/fhir/Patient/ann",
        json=patient("ann", "Alvarez", "female", "1950-03-01")
        | {
            "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ann</div>'},
            "communication": [{"language": {"text": "Spanish"}}],
        },
    )
    resource = archive.get(f"/fhir/Patient?_id=ann&_summary={summary}").json()["entry"][0]["resource"]
    assert present <= set(resource)
    assert not absent & set(resource)
    if summary != "data":
        assert "communication" not in resource  # not a summary element
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in resource[
        "meta"
    ]["tag"]


def test_summary_count_gives_the_total_only(archive):
    bundle = archive.get("/fhir/ImagingStudy?modality=MR&_summary=count").json()
    assert bundle["total"] == 2
    assert "entry" not in bundle  # json.html: no empty arrays


def test_elements_keeps_the_asked_elements_and_the_mandatory_ones(archive):
    resource = archive.get("/fhir/ImagingStudy?_id=s1&_elements=started").json()["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "started", "status", "subject"}


def test_total_counts_all_matches_not_the_page(archive):
    bundle = archive.get("/fhir/DiagnosticReport?_total=accurate&_count=1").json()
    assert bundle["total"] == 4
    assert len(bundle["entry"]) == 1


def test_compartment_search(archive):
    assert sorted(ids(archive, "/fhir/Patient/ann/ImagingStudy")) == ["s1", "s2"]
    assert ids(archive, "/fhir/Patient/ann/ImagingStudy?modality=CT") == ["s2"]
    everything = ids(archive, "/fhir/Patient/ann/*")
    assert sorted(everything) == ["o1", "r-s1", "r-s2", "s1", "s2"]
    assert archive.get("/fhir/Patient/ann/Organization").status_code == 400  # not in the Patient compartment
    assert archive.get("/fhir/Encounter/e1/Observation").status_code == 400


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("code-value-quantity=http://loinc.org|21889-1$23", ["o1"]),
        ("code-value-quantity=http://loinc.org|21889-1$gt20", ["o1"]),
        ("code-value-quantity=http://loinc.org|21889-1$lt20", []),
        ("code-value-quantity=21889-1$23|http://unitsofmeasure.org|mm", ["o1"]),
        ("code-value-quantity=33728-7$23", []),  # the 23 belongs to another code
        ("component-code-value-quantity=33728-7$12", ["o1"]),
        ("combo-code-value-quantity=33728-7$12", ["o1"]),
    ],
)
def test_composite_search(archive, query, expected):
    assert ids(archive, f"/fhir/Observation?{query}") == expected


def test_composite_without_dollar_is_400(archive):
    assert archive.get("/fhir/Observation?code-value-quantity=21889-1").status_code == 400


def test_identifier_of_type(archive):
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert ids(archive, f"/fhir/Patient?identifier:of-type={v2}|MR|mrn-bob") == ["bob"]
    assert ids(archive, f"/fhir/Patient?identifier:of-type={v2}|SS|mrn-bob") == []


def test_reference_identifier_modifier(client):
    client.post(
        "/fhir/ImagingStudy",
        json={
            "resourceType": "ImagingStudy",
            "status": "available",
            "subject": {"identifier": {"system": MRN, "value": "x"}},
        },
    )
    assert len(ids(client, f"/fhir/ImagingStudy?subject:identifier={MRN}|x")) == 1
    assert ids(client, f"/fhir/ImagingStudy?subject:identifier={MRN}|y") == []


def test_bad_chains_are_warnings_or_strict_400(archive):
    warning = archive.get("/fhir/ImagingStudy?status.gender=male").json()["entry"][-1]
    assert "'status' is not a reference parameter" in warning["resource"]["issue"][0]["diagnostics"]
    strict = archive.get("/fhir/ImagingStudy?subject.shoe=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    too_deep = "/fhir/DiagnosticReport?" + "subject:Patient.link:Patient." * 5 + "gender=male"
    assert archive.get(too_deep, headers={"Prefer": "handling=strict"}).status_code == 400


def test_modified_cursor_is_400(archive):
    bundle = archive.get("/fhir/Patient?_count=1").json()
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert archive.get(next_url.replace("_cursor=", "_cursor=x")).status_code == 400
