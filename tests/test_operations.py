"""The operations $validate, $meta, $meta-add, $meta-delete and Patient/[id]/$everything, HEAD on reads and
searches, and 404 for URLs that name no resource type or operation (R4 http.html, operations.html,
resource-operation-*.html, patient-operation-everything.html)."""

from __future__ import annotations

from typing import Any

SYSTEM = "urn:oid:1.2.3.4"
TAG = {"system": "urn:fhir-bridge:test", "code": "reviewed"}
LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


def _create(client, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def _patient(client, **fields: Any) -> dict[str, Any]:
    return _create(client, {"resourceType": "Patient", "gender": "female", **fields})


def _observation(client, patient_id: str, text: str = "tumour size") -> dict[str, Any]:
    return _create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": text},
            "subject": {"reference": f"Patient/{patient_id}"},
        },
    )


def _issues(response) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"]


def _errors(response) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [i for i in _issues(response) if i["severity"] in ("error", "fatal")]


# $validate ------------------------------------------------------------------------------------------
def test_validate_answers_200_with_the_outcome_whether_valid_or_not(client) -> None:
    """resource-operation-validate: 200 and an OperationOutcome either way; errors name the element."""
    valid = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": "male"})
    assert _errors(valid) == []
    assert _issues(valid)[0]["severity"] == "information"
    invalid = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "birthDate": "soon"})
    errors = _errors(invalid)
    assert errors and "birthDate" in " ".join(e.get("expression", [""])[0] + e["diagnostics"] for e in errors)
    assert client.get("/fhir/Patient/_history").json()["total"] == 0  # nothing was written


def test_validate_takes_parameters_with_resource_mode_and_profile(client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}},
            {"name": "mode", "valueCode": "create"},
            {"name": "profile", "valueUri": "http://hl7.org/fhir/StructureDefinition/Patient"},
        ],
    }
    assert _errors(client.post("/fhir/Patient/$validate", json=body)) == []
    body["parameter"][2]["valueUri"] = "http://example.org/StructureDefinition/unknown"
    (error,) = _errors(client.post("/fhir/Patient/$validate", json=body))
    assert error["code"] == "not-supported" and "unknown" in error["diagnostics"]
    wrong_type = client.post("/fhir/Patient/$validate", json={"resourceType": "Observation"})
    assert _errors(wrong_type)
    assert client.post("/fhir/Patient/$validate?mode=bogus", json={"resourceType": "Patient"}).status_code == 400


def test_validate_modes_check_what_the_write_would_meet(client) -> None:
    """mode=create checks references like a create; mode=delete says whether the delete would be refused
    (others refer to it); mode=update checks the id; none of them writes anything."""
    patient = _patient(client)
    _observation(client, patient["id"])
    dangling = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/nobody"},
    }
    (error,) = _errors(client.post("/fhir/Observation/$validate?mode=create", json=dangling))
    assert "Patient/nobody" in error["diagnostics"]
    assert _errors(client.post("/fhir/Observation/$validate", json=dangling)) == []  # no mode: content only
    (refused,) = _errors(client.post(f"/fhir/Patient/{patient['id']}/$validate?mode=delete"))
    assert refused["code"] == "conflict"
    lonely = _patient(client)
    assert _errors(client.post(f"/fhir/Patient/{lonely['id']}/$validate?mode=delete")) == []
    assert client.get(f"/fhir/Patient/{lonely['id']}").status_code == 200  # the dry run deleted nothing
    other_id = dict(patient, id="someone-else")
    assert _errors(client.post(f"/fhir/Patient/{patient['id']}/$validate?mode=update", json=other_id))
    assert _errors(client.post(f"/fhir/Patient/{patient['id']}/$validate?mode=update", json=patient)) == []
    assert client.post("/fhir/Patient/nobody/$validate?mode=delete").status_code == 404
    assert client.post("/fhir/Patient/$validate?mode=delete").status_code == 400  # delete names an instance
    assert client.get("/fhir/_history").json()["total"] == 3


# $meta, $meta-add, $meta-delete --------------------------------------------------------------------
def _meta(response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    (returned,) = response.json()["parameter"]
    assert returned["name"] == "return"
    return returned["valueMeta"]


def _meta_change(client, url: str, **meta: Any):  # type: ignore[no-untyped-def]
    return client.post(url, json={"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]})


def test_meta_add_and_delete_change_tags_labels_and_profiles_as_sets(client) -> None:
    """resource-operation-meta-add: tags and labels are sets by system+code, profiles by URL."""
    patient = _patient(client, meta={"tag": [TAG]})
    url = f"/fhir/Patient/{patient['id']}"
    profile = "http://example.org/StructureDefinition/research-patient"
    added = _meta(
        _meta_change(client, f"{url}/$meta-add", tag=[dict(TAG, display="again")], security=[LABEL], profile=[profile])
    )
    assert added["tag"] == [TAG]  # already there: not added twice
    assert added["security"] == [LABEL]
    assert added["profile"] == [profile]
    assert _meta(client.get(f"{url}/$meta")) == client.get(url).json()["meta"]
    removed = _meta(_meta_change(client, f"{url}/$meta-delete", tag=[TAG], profile=[profile]))
    assert "tag" not in removed and "profile" not in removed  # no empty arrays
    assert removed["security"] == [LABEL]
    # fhir-bridge makes each change a version, so that harvesters paging on versions see it
    assert removed["versionId"] == "3"
    assert _meta(client.get(f"{url}/_history/2/$meta"))["profile"] == [profile]
    assert _meta_change(client, "/fhir/Patient/nobody/$meta-add", tag=[TAG]).status_code == 404
    assert client.post(f"{url}/$meta-add", json={"resourceType": "Parameters"}).status_code == 400


def test_meta_of_a_type_and_of_the_system_lists_what_is_in_use(client) -> None:
    _patient(client, meta={"tag": [TAG]})
    _patient(client, meta={"security": [LABEL]})
    _create(client, {"resourceType": "Organization", "name": "x", "meta": {"tag": [{"code": "org"}]}})
    patients = _meta(client.get("/fhir/Patient/$meta"))
    assert patients["tag"] == [TAG] and patients["security"] == [LABEL]
    system = _meta(client.get("/fhir/$meta"))
    assert {t["code"] for t in system["tag"]} == {"reviewed", "org"}
    assert "lastUpdated" in system
    assert client.get("/fhir/Unknown/$meta").status_code == 404


# $everything ---------------------------------------------------------------------------------------
def test_everything_returns_the_patient_and_its_compartment_paged(client) -> None:
    patient = _patient(client)
    other = _patient(client)
    observations = {_observation(client, patient["id"], f"o{i}")["id"] for i in range(5)}
    _observation(client, other["id"])
    study = _create(
        client,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient['id']}"}},
    )
    url = f"/fhir/Patient/{patient['id']}/$everything"
    seen: list[str] = []
    page = client.get(url, params={"_count": 3}).json()
    assert page["type"] == "searchset"
    assert page["entry"][0]["resource"]["id"] == patient["id"]  # the Patient first
    for _ in range(10):
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page.get("entry", [])]
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if next_url is None:
            break
        assert "/$everything?" in next_url
        page = client.get(next_url).json()
    assert sorted(seen) == sorted(
        [f"Patient/{patient['id']}", f"ImagingStudy/{study['id']}", *(f"Observation/{o}" for o in observations)]
    )


def test_everything_since_and_type_narrow_it(client) -> None:
    patient = _patient(client)
    _observation(client, patient["id"], "before")
    since = client.get("/fhir/_history", params={"_count": 1}).json()["entry"][0]["response"]["lastModified"]
    later = _observation(client, patient["id"], "later")
    _create(
        client,
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient['id']}"}},
    )
    url = f"/fhir/Patient/{patient['id']}/$everything"
    recent = client.get(url, params={"_since": since, "_type": "Observation"}).json()
    assert [e["resource"]["id"] for e in recent["entry"]] == [later["id"]]  # updated after _since, of _type
    only_patient = client.get(url, params={"_type": "Patient"}).json()
    assert [e["resource"]["id"] for e in only_patient["entry"]] == [patient["id"]]
    assert client.get(url, params={"start": "2020"}).status_code == 400
    assert client.get(url, params={"_type": "Organization"}).status_code == 400
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404


# HEAD, unknown types and operations ------------------------------------------------------------------
def test_head_answers_like_get_without_a_body(client) -> None:
    """RFC 9110 9.3.2: HEAD is GET without the content; same status, ETag and Content-Length."""
    patient = _patient(client)
    for url in (
        f"/fhir/Patient/{patient['id']}",
        "/fhir/Patient?gender=female",
        "/fhir",
        f"/fhir/Patient/{patient['id']}/_history/1",
    ):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code == 200, url
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers.get("etag") == got.headers.get("etag")
    assert client.head("/fhir/Patient/nobody").status_code == 404


def test_unknown_types_and_operations_are_404(client) -> None:
    """http.html: a resource type the server does not know is a 404 (not a 400); an unknown operation too."""
    for method, url in (
        ("GET", "/fhir/Foo"),
        ("GET", "/fhir/Foo/1"),
        ("POST", "/fhir/Foo"),
        ("PUT", "/fhir/Foo/1"),
        ("DELETE", "/fhir/Foo/1"),
    ):
        response = client.request(method, url, json={"resourceType": "Foo", "id": "1"})
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["issue"][0]["diagnostics"] == "unknown resource type 'Foo'"
    patient = _patient(client)
    for url in ("/fhir/Patient/$lastn", f"/fhir/Patient/{patient['id']}/$lastn"):
        response = client.get(url)
        assert response.status_code == 404
        assert "$lastn" in response.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/nobody/$meta").json()["issue"][0]["diagnostics"] == "Patient/nobody is not known"
