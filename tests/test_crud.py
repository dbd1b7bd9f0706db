"""create, read, vread, update, patch and delete over the real HTTP app, on both databases."""

from __future__ import annotations

import json

from tests.conftest import example

JSON_PATCH = {"content-type": "application/json-patch+json"}


def patient(**fields: object) -> dict:
    resource = example("Patient-example")
    resource.pop("managingOrganization")
    resource.pop("id")
    resource.update(fields)
    return resource


def test_create_assigns_id_version_and_last_updated(client):
    body = patient(id="client-chosen")
    response = client.post("/fhir/Patient", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["id"] != "client-chosen"  # the spec: a server ignores the id of a create
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["location"] == f"http://testserver/fhir/Patient/{created['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert "last-modified" in response.headers


def test_read_returns_the_stored_resource(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    response = client.get(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'


def test_read_of_unknown_id_is_404_operation_outcome(client):
    response = client.get("/fhir/Patient/does-not-exist")
    assert response.status_code == 404
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Patient/does-not-exist" in outcome["issue"][0]["diagnostics"]


def test_update_creates_a_new_version_and_vread_keeps_the_old_one(client):
    created = client.post("/fhir/Patient", json=patient(gender="male")).json()
    changed = dict(created, gender="female")
    response = client.put(f"/fhir/Patient/{created['id']}", json=changed)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["content-location"].endswith(f"/Patient/{created['id']}/_history/2")
    assert client.get(f"/fhir/Patient/{created['id']}/_history/1").json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/2").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{created['id']}/_history/3").status_code == 404


def test_update_without_changes_keeps_the_version(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    response = client.put(f"/fhir/Patient/{created['id']}", json=created)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_client_id(client):
    response = client.put("/fhir/Patient/chosen-id", json=patient(id="chosen-id"))
    assert response.status_code == 201
    assert response.headers["location"].endswith("/Patient/chosen-id/_history/1")
    assert client.get("/fhir/Patient/chosen-id").status_code == 200


def test_update_with_mismatching_or_missing_id_is_400(client):
    mismatch = client.put("/fhir/Patient/a", json=patient(id="b"))
    assert mismatch.status_code == 400
    assert mismatch.json()["issue"][0]["expression"] == ["Patient.id"]
    assert client.put("/fhir/Patient/a", json=patient()).status_code == 400


def test_if_match_guards_updates(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    stale = client.put(url, json=dict(created, gender="other"), headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    current = client.put(url, json=dict(created, gender="other"), headers={"If-Match": 'W/"1"'})
    assert current.status_code == 200
    assert client.get(url).json()["gender"] == "other"


def test_delete_makes_read_answer_410_and_keeps_history(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    response = client.delete(url)
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).status_code == 410
    assert client.get(f"{url}/_history/1").status_code == 200
    assert client.get(f"{url}/_history/2").status_code == 410
    assert client.delete(url).status_code == 200  # deleting again is harmless
    search = client.get("/fhir/Patient", params={"_id": created["id"]}).json()
    assert "entry" not in search  # json.html: no empty arrays


def test_update_after_delete_revives_with_next_version(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    url = f"/fhir/Patient/{created['id']}"
    client.delete(url)
    revived = client.put(url, json=created)
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"


def test_delete_of_unknown_resource_is_404(client):
    assert client.delete("/fhir/Patient/nobody").status_code == 404


def test_json_patch_applies_and_validates(client):
    created = client.post("/fhir/Patient", json=patient(gender="male")).json()
    url = f"/fhir/Patient/{created['id']}"
    operations = [{"op": "replace", "path": "/gender", "value": "female"}]
    response = client.patch(url, content=json.dumps(operations), headers=JSON_PATCH | {"If-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.json()["gender"] == "female"
    assert response.json()["meta"]["versionId"] == "2"
    invalid = [{"op": "replace", "path": "/birthDate", "value": "not a date"}]
    rejected = client.patch(url, content=json.dumps(invalid), headers=JSON_PATCH)
    assert rejected.status_code == 400
    assert rejected.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    failing = [{"op": "test", "path": "/gender", "value": "male"}]
    assert client.patch(url, content=json.dumps(failing), headers=JSON_PATCH).status_code == 422
    assert client.get(url).json()["meta"]["versionId"] == "2"


def test_patch_with_other_content_type_is_415(client):
    created = client.post("/fhir/Patient", json=patient()).json()
    body = json.dumps([{"op": "remove", "path": "/gender"}])
    response = client.patch(f"/fhir/Patient/{created['id']}", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "merge-patch" in response.json()["issue"][0]["diagnostics"]


def test_any_resource_type_of_the_spec_is_stored(client):
    for name in ("Practitioner-example", "Endpoint-example-wadors", "Observation-example"):
        resource = example(name)
        resource.pop("id", None)
        for field in ("subject", "managingOrganization", "performer", "encounter"):
            resource.pop(field, None)
        response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text


def test_imaging_study_example_round_trips(client):
    study = example("ImagingStudy-example")
    study["subject"] = {"reference": "Patient/dicom"}
    client.put("/fhir/Patient/dicom", json={"resourceType": "Patient", "id": "dicom"})
    response = client.put(f"/fhir/ImagingStudy/{study['id']}", json=study)
    assert response.status_code == 201, response.text
    stored = client.get(f"/fhir/ImagingStudy/{study['id']}").json()
    stored.pop("meta")
    assert stored == study
