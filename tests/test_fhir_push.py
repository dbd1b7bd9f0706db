"""FHIR pushed by an EHR through the privacy layer (``POST /ingest/fhir``), and the REST API's refusal of
identifiable Patients (``refuse_identified_patients``), on SQLite and PostgreSQL.

The EHR's data are the FHIR R4 specification's own examples (hl7.fhir.r4.examples: Patient "example",
Peter James Chalmers, MRN 12345 of urn:oid:1.2.36.146.595.217.0.1, and resources about him).
"""

from __future__ import annotations

import copy
import json
import re
import uuid

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.r4_examples import r4_examples
from tests.store_consistency import database_text

MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"
PETER = Patient("12345", "Chalmers^Peter^James", "19741225", "M", "1.2.36.146.595.217.0.1")
# What must be nowhere in the database: names, contacts, addresses, the MRN, the full birth date.
SECRETS = (
    "Chalmers",
    "Peter",
    "Windsor",
    "Bénédicte",
    "March",
    "Erewhon",
    "PleasantVille",
    "5555",
    "3410",
    "1974-12-25",
)
NDJSON = {"Content-Type": "application/fhir+ndjson"}
BOUNDARY = "fhir-push"


def _example(name: str) -> dict:
    return copy.deepcopy(r4_examples()[name])


def ehr_bundle() -> dict:
    """A transaction as an EHR's integration engine sends it: the patient by urn:uuid, the rest pointing there."""
    patient_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'peter')}"
    patient = _example("Patient-example.json")
    del patient["id"]
    entries = [{"fullUrl": patient_url, "resource": patient, "request": {"method": "POST", "url": "Patient"}}]
    organization = _example("Organization-1.json")
    entries.append(
        {
            "fullUrl": "http://ehr.example.org/fhir/Organization/1",
            "resource": organization,
            "request": {"method": "PUT", "url": "Organization/1"},
        }
    )
    for name in ("Condition-example.json", "Encounter-example.json", "Observation-body-height.json"):
        resource = _example(name)
        resource["subject"] = {"reference": patient_url, "display": "Peter James Chalmers"}
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _push(client: TestClient, body: dict | str, headers: dict | None = None) -> dict:
    if isinstance(body, dict):
        response = client.post("/ingest/fhir", json=body, headers=headers)
    else:
        response = client.post("/ingest/fhir", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _stow(client: TestClient, study: int, **attributes: object) -> None:
    """A DICOM study of Peter (MRN 12345, IssuerOfPatientID = the MRN system's OID) by STOW-RS."""
    part = instance(
        "CT_small.dcm",
        patient=PETER,
        study_uid=uid(900, study),
        series_uid=uid(900, study, 1),
        sop_uid=uid(900, study, 1, 1),
        **attributes,
    )
    stow = client.post(
        "/dicomweb/studies",
        content=multipart([part], BOUNDARY),
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
    )
    assert stow.status_code == 200, stow.text


def _all(client: TestClient, resource_type: str, **parameters: str) -> list[dict]:
    bundle = client.get(f"/fhir/{resource_type}", params={"_count": "100", **parameters}).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_an_ehr_bundle_meets_its_dicom_study_on_one_pseudonymised_patient_and_nothing_identifying_is_stored(
    client, database_url
):
    result = _push(client, ehr_bundle())
    assert result["summary"] == {"resources": 5, "created": 5, "updated": 0, "unchanged": 0}
    patient_ref = result["resources"][0]["reference"]
    # the DICOM study of the same MRN, same issuer (IssuerOfPatientID = the MRN system's OID)
    _stow(client, 1)
    (study,) = _all(client, "ImagingStudy")
    assert study["subject"]["reference"] == patient_ref
    (patient,) = _all(client, "Patient")
    assert f"Patient/{patient['id']}" == patient_ref
    assert {"name", "telecom", "address", "photo", "contact", "text", "extension"} & set(patient) == set()
    assert patient["birthDate"] == "1974" and patient["gender"] == "male"
    assert patient["identifier"][0]["system"] == MRN_SYSTEM
    assert re.fullmatch(r"[0-9a-f]{64}", patient["identifier"][0]["value"])
    assert {"code": "PSEUDED"}.items() <= patient["meta"]["security"][0].items()
    # every resource about him points at the one Patient, without the name the EHR put in the display
    for resource_type in ("Condition", "Encounter", "Observation"):
        (resource,) = _all(client, resource_type)
        assert resource["subject"] == {"reference": patient_ref}
        assert "text" not in resource
        assert any(label["code"] == "PSEUDED" for label in resource["meta"]["security"])
    (organization,) = _all(client, "Organization")
    assert patient["managingOrganization"] == {"reference": f"Organization/{organization['id']}"}
    assert organization["identifier"][0]["value"] != "Gastro"  # other identifiers: keyed hashes
    everything = client.get(f"/fhir/Patient/{patient['id']}/$everything").json()
    assert len(everything["entry"]) >= 5
    provenance = _all(client, "Provenance", target=patient_ref)
    assert any(p["activity"]["text"] == "FHIR push (HTTP POST /ingest/fhir)" for p in provenance)
    # nothing identifying anywhere in the database (the audit trail included)
    stored = database_text(database_url)
    for secret in SECRETS:
        assert secret not in stored, secret
    assert not re.search(r"(?<![0-9a-f])12345(?![0-9a-f])", stored)
    # pushed again: nothing changes
    again = _push(client, ehr_bundle())
    assert again["summary"]["unchanged"] == 5 and "provenance" not in again


def test_ndjson_from_an_ehr_export_is_pseudonymised_with_references_rewritten(client):
    patient = _example("Patient-dicom.json")  # MINT1234 of http://nema.org/examples/patients, "MINT_TEST"
    observation = _example("Observation-body-height.json")
    observation["subject"] = {"reference": "Patient/dicom"}
    condition = _example("Condition-example.json")
    condition["subject"] = {"identifier": {"system": "http://nema.org/examples/patients", "value": "MINT1234"}}
    organization = _example("Organization-1.json")  # the patient's managingOrganization
    body = "\n".join(json.dumps(r) for r in (patient, observation, condition, organization)) + "\n"
    result = _push(client, body, NDJSON)
    assert [r["entry"] for r in result["resources"]] == ["line 1", "line 2", "line 3", "line 4"]
    patient_ref = result["resources"][0]["reference"]
    assert {r["subject"]["reference"] for t in ("Observation", "Condition") for r in _all(client, t)} == {patient_ref}
    (stored,) = _all(client, "Patient")
    assert "MINT" not in json.dumps(stored) and "extension" not in stored


def test_a_push_naming_a_patient_it_does_not_hold_is_refused_naming_the_entry(client):
    observation = _example("Observation-body-height.json")  # subject Patient/example, not pushed
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
    }
    response = client.post("/ingest/fhir", json=bundle)
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("Bundle.entry[0]: the reference to 'Patient/example'")
    deletion = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Patient/1"}}],
    }
    assert client.post("/ingest/fhir", json=deletion).status_code == 400
    contained = _example("Observation-body-height.json")
    contained["contained"] = [_example("Patient-dicom.json")]
    contained["subject"] = {"reference": "#dicom"}
    refused = client.post("/ingest/fhir", content=json.dumps(contained) + "\n", headers=NDJSON)
    assert refused.status_code == 422 and "contained Patient" in refused.json()["issue"][0]["diagnostics"]
    assert _all(client, "Observation") == []


def test_an_order_pushed_with_its_accession_number_meets_the_study_of_that_accession_and_issuer(client):
    bundle = ehr_bundle()
    patient_url = bundle["entry"][0]["fullUrl"]
    acsn = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
    order = {
        "resourceType": "ServiceRequest",
        "id": "order-9",
        "status": "completed",
        "intent": "order",
        "subject": {"reference": patient_url},
        "identifier": [{"type": acsn, "system": "urn:oid:1.2.3.4.5", "value": "ACC-9"}],
    }
    bundle["entry"].append({"resource": order, "request": {"method": "PUT", "url": "ServiceRequest/order-9"}})
    _push(client, bundle)
    issuer = Dataset()
    issuer.UniversalEntityID, issuer.UniversalEntityIDType = "1.2.3.4.5", "ISO"
    _stow(client, 2, AccessionNumber="ACC-9", IssuerOfAccessionNumberSequence=DicomSequence([issuer]))
    (study,) = _all(client, "ImagingStudy")
    (stored_order,) = _all(client, "ServiceRequest")
    study_accession = next(i for i in study["identifier"] if i.get("type"))
    order_accession = stored_order["identifier"][0]
    assert study_accession["system"] == order_accession["system"] == "urn:oid:1.2.3.4.5"
    assert study_accession["value"] == order_accession["value"] != "ACC-9"
    assert stored_order["subject"] == study["subject"]


# the REST API -------------------------------------------------------------------------------------
def test_the_plain_rest_api_stores_an_identifiable_patient_as_given_by_default(client):
    patient = _example("Patient-example.json")
    del patient["managingOrganization"]  # not stored here: the store would refuse the dangling reference
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 201
    assert response.json()["name"][0]["family"] == "Chalmers"


@pytest.fixture
def guarded(database_url: str):
    settings = Settings(
        database_url=database_url,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        pseudonym_key_file=None,
        refuse_identified_patients=True,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def test_rest_writes_of_identifiable_patients_are_refused_when_the_site_says_so(guarded):
    response = guarded.post("/fhir/Patient", json=_example("Patient-example.json"))
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "security" and "/ingest/fhir" in issue["diagnostics"]
    assert {"Patient.name", "Patient.telecom", "Patient.address", "Patient.contact", "Patient.identifier[0]"} <= set(
        issue["expression"]
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _example("Patient-dicom.json"), "request": {"method": "PUT", "url": "Patient/dicom"}}],
    }
    assert guarded.post("/fhir", json=bundle).status_code == 422
    # a pseudonymised Patient passes; a patch that adds a name does not
    pseudonymised = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": "a" * 64}],
        "gender": "male",
        "birthDate": "1974",
    }
    created = guarded.post("/fhir/Patient", json=pseudonymised)
    assert created.status_code == 201
    patch = [{"op": "add", "path": "/name", "value": [{"family": "Chalmers"}]}]
    patched = guarded.patch(
        f"/fhir/Patient/{created.json()['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status_code == 422 and "Patient.name" in patched.json()["issue"][0]["expression"]
    # identifiable FHIR goes through the ingest, which pseudonymises it
    assert guarded.post("/ingest/fhir", json=ehr_bundle()).status_code == 200


def test_a_push_needs_write_scopes_on_every_type_it_holds(secured, client_keys):
    from tests.security_helpers import headers_for

    patient_only = headers_for(secured, client_keys, "writer", "system/Patient.cu system/Provenance.cu")
    refused = secured.post("/ingest/fhir", json=ehr_bundle(), headers=patient_only)
    assert refused.status_code == 403
    assert secured.get("/fhir/Patient", headers=headers_for(secured, client_keys, "writer")).json().get("entry") is None
    allowed = secured.post("/ingest/fhir", json=ehr_bundle(), headers=headers_for(secured, client_keys, "writer"))
    assert allowed.status_code == 200, allowed.text
