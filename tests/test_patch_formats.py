"""PATCH in its three formats (R4 http.html#patch): JSON Patch, JSON Merge Patch (RFC 7396) and
FHIRPath Patch (fhirpatch.html), by id, by criteria (conditional patch) and inside Bundles."""

from __future__ import annotations

import base64
import json
from typing import Any

SYSTEM = "urn:oid:1.2.3.4"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _patient(client, value: str = "m1", **fields: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        **fields,
    }
    created = client.post("/fhir/Patient", json=resource)
    assert created.status_code == 201, created.text
    return created.json()


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; ``value`` given as {"valueX": ...} or {"part": [...]}."""
    found = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            found.append({"name": "value", **value})
        elif isinstance(value, int):
            found.append({"name": name, "valueInteger": value})
        else:
            found.append({"name": name, "valueString": value})
    return {"name": "operation", "part": found}


def fhirpath_patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


# JSON Merge Patch -------------------------------------------------------------------------------
def test_merge_patch_sets_members_and_null_removes_them(client) -> None:
    """RFC 7396: members are merged recursively, null removes a member; a new version is made."""
    created = _patient(client)
    patch = {"gender": "female", "birthDate": None, "maritalStatus": {"text": "married"}}
    response = client.patch(f"/fhir/Patient/{created['id']}", content=json.dumps(patch), headers=MERGE_PATCH)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["gender"] == "female"
    assert "birthDate" not in patched
    assert patched["maritalStatus"] == {"text": "married"}
    assert patched["name"] == created["name"]
    assert patched["meta"]["versionId"] == "2"


def test_a_json_object_sent_as_application_json_is_a_merge_patch(client) -> None:
    """fhirpy sends partial updates so; a JSON Patch is an array, so the two cannot be confused."""
    created = _patient(client)
    url = f"/fhir/Patient/{created['id']}"
    assert client.patch(url, json={"active": False}).json()["active"] is False
    as_array = client.patch(url, json=[{"op": "replace", "path": "/active", "value": True}])
    assert as_array.status_code == 200
    assert as_array.json()["active"] is True


def test_a_patch_that_empties_an_array_removes_it(client) -> None:
    """json.html: no empty arrays; removing the last identifier leaves no identifier element."""
    created = _patient(client)
    url = f"/fhir/Patient/{created['id']}"
    removed = client.patch(
        url,
        content=json.dumps([{"op": "remove", "path": "/identifier/0"}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert removed.status_code == 200
    assert "identifier" not in removed.json()
    emptied = client.patch(url, content=json.dumps({"maritalStatus": {"text": None}}), headers=MERGE_PATCH)
    assert "maritalStatus" not in emptied.json()


def test_a_merge_patch_may_not_change_type_or_id(client) -> None:
    created = _patient(client)
    url = f"/fhir/Patient/{created['id']}"
    assert client.patch(url, content=json.dumps({"id": "other"}), headers=MERGE_PATCH).status_code == 422
    assert client.patch(url, content=json.dumps([1, 2]), headers=MERGE_PATCH).status_code == 400
    assert client.get(url).json()["meta"]["versionId"] == "1"


# FHIRPath Patch -----------------------------------------------------------------------------------
def test_fhirpath_patch_add_insert_replace_delete_and_move(client) -> None:
    """Each operation type of fhirpatch.html, applied in order in one Parameters."""
    created = _patient(client, telecom=[{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b.c"}])
    patch = fhirpath_patch(
        operation("add", "Patient", name="identifier", value={"valueIdentifier": {"system": "urn:x", "value": "2"}}),
        operation("add", "Patient", name="active", value={"valueBoolean": True}),
        operation("add", "Patient", name="deceased", value={"valueBoolean": False}),  # a choice: deceasedBoolean
        operation("insert", "Patient.name[0].given", index=0, value={"valueString": "Jim"}),
        operation("replace", "Patient.gender", value={"valueCode": "other"}),
        operation("delete", "Patient.birthDate"),
        operation("delete", "Patient.address"),  # nothing there: nothing happens
        operation("move", "Patient.telecom", source=1, destination=0),
        operation(
            "add",
            "Patient",
            name="contact",
            value={
                "part": [
                    {"name": "name", "valueHumanName": {"family": "Doe"}},
                    {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "9"}},
                ]
            },
        ),
    )
    response = client.patch(f"/fhir/Patient/{created['id']}", json=patch, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["identifier"] == [{"system": SYSTEM, "value": "m1"}, {"system": "urn:x", "value": "2"}]
    assert patched["active"] is True and patched["deceasedBoolean"] is False
    assert patched["name"][0]["given"] == ["Jim", "Peter", "James"]
    assert patched["gender"] == "other"
    assert "birthDate" not in patched and "address" not in patched
    assert [t["system"] for t in patched["telecom"]] == ["email", "phone"]
    # an anonymous type from parts: name is a single HumanName, telecom an array (from the R4 definitions)
    assert patched["contact"] == [{"name": {"family": "Doe"}, "telecom": [{"system": "phone", "value": "9"}]}]


def test_fhirpath_patch_paths_filter_with_where(client) -> None:
    created = _patient(client, identifier=[{"system": SYSTEM, "value": "m1"}, {"system": "urn:other", "value": "o"}])
    patch = fhirpath_patch(
        operation("replace", f"Patient.identifier.where(system = '{SYSTEM}').value", value={"valueString": "m2"}),
        operation("delete", "Patient.identifier.where(system = 'urn:other')"),
    )
    patched = client.patch(f"/fhir/Patient/{created['id']}", json=patch, headers=FHIR_JSON).json()
    assert patched["identifier"] == [{"system": SYSTEM, "value": "m2"}]


def test_fhirpath_patch_errors_name_the_operation_and_change_nothing(client) -> None:
    """A path selecting several elements, an absent element to replace, a single element added twice: 422;
    a malformed patch or a path beyond the FHIRPath subset: 400; the resource stays at version 1."""
    created = _patient(client)
    url = f"/fhir/Patient/{created['id']}"
    refused = [
        (fhirpath_patch(operation("replace", "Patient.name.given", value={"valueString": "x"})), 422),
        (
            fhirpath_patch(
                operation("replace", "Patient.maritalStatus", value={"valueCodeableConcept": {"text": "x"}})
            ),
            422,
        ),
        (fhirpath_patch(operation("add", "Patient", name="gender", value={"valueCode": "female"})), 422),
        (fhirpath_patch(operation("insert", "Patient.name[0].given", index=5, value={"valueString": "x"})), 422),
        (fhirpath_patch(operation("explode", "Patient.gender")), 400),
        (fhirpath_patch(operation("delete", "Observation.status")), 400),
        (fhirpath_patch(operation("delete", "Patient.name.select(given)")), 400),
        (fhirpath_patch(operation("replace", "Patient.gender", value={"valueCode": "other"}), {"name": "x"}), 400),
    ]
    for patch, status in refused:
        response = client.patch(url, json=patch, headers=FHIR_JSON)
        assert response.status_code == status, (patch, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"][0].startswith("Parameters.parameter["), outcome
    assert client.get(url).json()["meta"]["versionId"] == "1"
    not_parameters = client.patch(url, json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert not_parameters.status_code == 400


# conditional patch --------------------------------------------------------------------------------
def test_conditional_patch_with_each_format(client) -> None:
    """http.html#patch: PATCH [type]?criteria patches the single match, in any of the three formats."""
    created = _patient(client, "c1")
    url = f"/fhir/Patient?identifier={SYSTEM}|c1"
    json_patch = client.patch(
        url,
        content=json.dumps([{"op": "replace", "path": "/gender", "value": "female"}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    merge = client.patch(url, content=json.dumps({"active": True}), headers=MERGE_PATCH)
    fhirpath = client.patch(url, json=fhirpath_patch(operation("delete", "Patient.birthDate")), headers=FHIR_JSON)
    assert [r.status_code for r in (json_patch, merge, fhirpath)] == [200, 200, 200]
    final = client.get(f"/fhir/Patient/{created['id']}").json()
    assert (final["gender"], final["active"], "birthDate" in final) == ("female", True, False)
    assert final["meta"]["versionId"] == "4"
    _patient(client, "c1")
    assert client.patch(url, content=json.dumps({"active": False}), headers=MERGE_PATCH).status_code == 412
    nobody = client.patch(f"/fhir/Patient?identifier={SYSTEM}|none", json={"active": False})
    assert nobody.status_code == 404


# in Bundles -----------------------------------------------------------------------------------------
def _binary(patch: Any, content_type: str) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": content_type,
        "data": base64.b64encode(json.dumps(patch).encode()).decode(),
    }


def test_transaction_patches_with_binary_json_patch_merge_patch_and_parameters(client) -> None:
    """http.html#transaction: a PATCH entry carries a Binary (JSON Patch, or merge patch by its
    contentType) or a Parameters resource (FHIRPath Patch); conditional urls too."""
    first, second, third = (_patient(client, v) for v in ("t1", "t2", "t3"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _binary(
                    [{"op": "replace", "path": "/gender", "value": "female"}], "application/json-patch+json"
                ),
                "request": {"method": "PATCH", "url": f"Patient/{first['id']}"},
            },
            {
                "resource": _binary({"active": True}, "application/merge-patch+json"),
                "request": {"method": "PATCH", "url": f"Patient?identifier={SYSTEM}|t2"},
            },
            {
                "resource": fhirpath_patch(operation("delete", "Patient.birthDate")),
                "request": {"method": "PATCH", "url": f"Patient/{third['id']}"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["200 OK"] * 3
    assert client.get(f"/fhir/Patient/{first['id']}").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{second['id']}").json()["active"] is True
    assert "birthDate" not in client.get(f"/fhir/Patient/{third['id']}").json()


def test_a_failing_patch_entry_fails_the_whole_transaction(client) -> None:
    created, other = _patient(client, "t4"), _patient(client, "t5")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _binary({"active": True}, "application/merge-patch+json"),
                "request": {"method": "PATCH", "url": f"Patient/{created['id']}"},
            },
            {
                "resource": fhirpath_patch(operation("replace", "Patient.name.given", value={"valueString": "x"})),
                "request": {"method": "PATCH", "url": f"Patient/{other['id']}"},
            },
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 422, response.text
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{created['id']}").json()["meta"]["versionId"] == "1"
