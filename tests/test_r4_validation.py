"""Resources are validated as FHIR R4 4.0.1, from the specification's own definitions (issue 13).

The examples are the specification's (tests/data/r4-examples, see tests/r4_examples.py); each invalid
variant breaks one rule and must be answered 400 with an OperationOutcome naming the element.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fhir_bridge.api.app import create_app
from fhir_bridge.settings import Settings
from fhir_bridge.spec.validator import _Run, validator
from tests.r4_examples import r4_examples

# Errors in the R4 4.0.1 examples themselves (the HL7 validator reports them too): file -> messages.
SPEC_ERRATA = {
    "DeviceMetric-example.json": {"parent refers to Device, not to a DeviceDefinition ('DeviceDefinition/dc102')"},
    "DeviceUseStatement-example.json": {
        "reasonReference refers to Condition | DiagnosticReport | DocumentReference | Media | Observation, "
        "not to a Procedure ('Procedure/example')"
    },
    "MedicationRequest-medrx0301.json": {
        "performer refers to Organization, not to a Practitioner ('Practitioner/f001')"
    },
    "Observation-clinical-gender.json": {
        "performer refers to CareTeam | Organization | Patient | Practitioner | PractitionerRole | RelatedPerson, "
        "not to a Encounter ('Encounter/example')"
    },
    "Questionnaire-qs1.json": {"linkId is required (min 1) in Questionnaire.item"},
    "SearchParameter-valueset-extensions-ValueSet-author.json": {"base is required (min 1) in SearchParameter"},
    "SearchParameter-valueset-extensions-ValueSet-end.json": {"base is required (min 1) in SearchParameter"},
}
# The server writes the audit trail itself: a client's AuditEvent is a 405 whatever its content.
SERVER_WRITTEN = {"AuditEvent"}


def _errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.expression, i.message) for i in validator().validate(resource) if i.severity == "error"]


def test_every_r4_example_is_valid_but_for_the_errors_in_the_spec_itself() -> None:
    """All 733 examples (every resource type with an example, and some of each conformance type) validate,
    except 7 that break R4's own definitions: a Reference to a type its element does not allow
    (references.html#Reference: targetProfile), a missing 1..1 element (Questionnaire.item.linkId,
    SearchParameter.base). Validating all 5,306 resources of the package finds 11 more of the same kinds
    (ids over 64 characters, ImplementationGuide without name and status)."""
    examples = r4_examples()
    assert len(examples) == 733
    assert len({resource["resourceType"] for resource in examples.values()}) == 140
    failing = {name: {message for _, message in errors} for name, r in examples.items() if (errors := _errors(r))}
    assert failing == SPEC_ERRATA


def _one_example_per_type() -> list[tuple[str, dict[str, Any]]]:
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, resource in r4_examples().items():
        kind = resource["resourceType"]
        if name not in SPEC_ERRATA and kind not in SERVER_WRITTEN:
            chosen.setdefault(kind, (name, resource))
    return list(chosen.values())


@pytest.fixture
def unchecked_references(settings: Settings) -> Iterator[TestClient]:
    """The app without referential integrity: the examples refer to each other and to resources not given."""
    app = create_app(settings.model_copy(update={"enforce_referential_integrity": False}))
    with TestClient(app) as test_client:
        yield test_client
    app.state.services.close()


def test_one_example_of_every_resource_type_is_created_over_http(unchecked_references: TestClient) -> None:
    """http.html#create: a valid resource is stored (201). One spec example per resource type, posted to the
    real app: 137 types (the server writes AuditEvents itself; DeviceMetric's and DeviceUseStatement's only
    examples are errata)."""
    samples = _one_example_per_type()
    assert len(samples) == 137
    refused = {}
    for name, resource in samples:
        response = unchecked_references.post(f"/fhir/{resource['resourceType']}", json=resource)
        if response.status_code != 201:
            refused[name] = (response.status_code, response.text[:300])
    assert refused == {}


def test_a_bundle_whose_first_resource_has_identifiers_is_stored(unchecked_references: TestClient) -> None:
    """The search parameters ``composition`` and ``message`` (expression Bundle.entry[0].resource, type
    reference) reach a resource, not a Reference: it is not indexed as one (an identifier array there was
    a 500 for 11 of the spec's Bundles)."""
    resource = r4_examples()["Bundle-bundle-references.json"]
    assert not _errors(resource)
    assert unchecked_references.post("/fhir/Bundle", json=resource).status_code == 201


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"use": "usual", "system": "urn:oid:1.2.3", "value": "12345"}],
    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Peter Chalmers</div>'},
}
VALID: dict[str, dict[str, Any]] = {
    "Patient": PATIENT,
    "ImagingStudy": {"resourceType": "ImagingStudy", "status": "available", "subject": {"display": "a patient"}},
    "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}},
    "DiagnosticReport": {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "CT report"}},
    "Endpoint": {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "payloadType": [{"text": "DICOM"}],
        "address": "https://pacs.example.org/dicomweb",
    },
    "Bundle": {"resourceType": "Bundle", "type": "collection"},
    "ActivityDefinition": {"resourceType": "ActivityDefinition", "status": "draft"},
    "Condition": {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "remission"}]
        },
        "subject": {"display": "a patient"},
    },
}


def _variant(resource_type: str, change: Any) -> dict[str, Any]:
    resource = copy.deepcopy(VALID[resource_type])
    change(resource)
    return resource


# (what, resource, the element the OperationOutcome must name, its issue code); each breaks one rule
INVALID = [
    # terminologies.html#required: a code outside a required value set (the R4B models checked none)
    (
        "ImagingStudy.status",
        _variant("ImagingStudy", lambda r: r.update(status="bogus")),
        "ImagingStudy.status",
        "code-invalid",
    ),
    (
        "Observation.status",
        _variant("Observation", lambda r: r.update(status="bogus")),
        "Observation.status",
        "code-invalid",
    ),
    (
        "DiagnosticReport.status",
        _variant("DiagnosticReport", lambda r: r.update(status="bogus")),
        "DiagnosticReport.status",
        "code-invalid",
    ),
    ("Endpoint.status", _variant("Endpoint", lambda r: r.update(status="bogus")), "Endpoint.status", "code-invalid"),
    ("Patient.gender", _variant("Patient", lambda r: r.update(gender="M")), "Patient.gender", "code-invalid"),
    (
        "Identifier.use",
        _variant("Patient", lambda r: r["identifier"][0].update(use="main")),
        "Patient.identifier[0].use",
        "code-invalid",
    ),
    (
        "Narrative.status",
        _variant("Patient", lambda r: r["text"].update(status="final")),
        "Patient.text.status",
        "code-invalid",
    ),
    ("Bundle.type", _variant("Bundle", lambda r: r.update(type="bag")), "Bundle.type", "code-invalid"),
    (
        "Condition.clinicalStatus (a required CodeableConcept)",
        _variant("Condition", lambda r: r["clinicalStatus"]["coding"][0].update(code="cured")),
        "Condition.clinicalStatus.coding",
        "code-invalid",
    ),
    # activitydefinition.html (R4): subject[x] is CodeableConcept | Reference; subjectCanonical is R4B's
    (
        "ActivityDefinition.subjectCanonical",
        _variant("ActivityDefinition", lambda r: r.update(subjectCanonical="http://x.org/G")),
        "ActivityDefinition.subjectCanonical",
        "structure",
    ),
    # json.html: no empty arrays, objects or strings; null only in primitive arrays (and ele-1)
    ("an empty array", _variant("Patient", lambda r: r.update(name=[])), "Patient.name", "structure"),
    ("an empty object", _variant("Patient", lambda r: r.update(identifier=[{}])), "Patient.identifier[0]", "structure"),
    (
        "an empty string",
        _variant("Patient", lambda r: r["name"][0].update(family="")),
        "Patient.name[0].family",
        "value",
    ),
    ("a null", _variant("Patient", lambda r: r.update(active=None)), "Patient.active", "structure"),
    (
        "a null in a primitive array without _given",
        _variant("Patient", lambda r: r["name"][0]["given"].append(None)),
        "Patient.name[0].given[2]",
        "structure",
    ),
    # datatypes.html: primitive types, their JSON representation and their regexes
    ("a boolean as a string", _variant("Patient", lambda r: r.update(active="true")), "Patient.active", "structure"),
    (
        "an impossible date",
        _variant("Patient", lambda r: r.update(birthDate="1974-13-25")),
        "Patient.birthDate",
        "value",
    ),
    (
        "an unsignedInt below 0",
        _variant("ImagingStudy", lambda r: r.update(numberOfSeries=-1)),
        "ImagingStudy.numberOfSeries",
        "value",
    ),
    (
        "a decimal as a string",
        _variant("Observation", lambda r: r.update(valueQuantity={"value": "72.5"})),
        "Observation.valueQuantity.value",
        "structure",
    ),
    # cardinality (elementdefinition.html: min/max)
    ("a missing 1..1 element", _variant("Observation", lambda r: r.pop("code")), "Observation.code", "required"),
    (
        "a 0..1 element as an array",
        _variant("Patient", lambda r: r.update(gender=["male"])),
        "Patient.gender",
        "structure",
    ),
    (
        "a 0..* element as an object",
        _variant("Patient", lambda r: r.update(name={"family": "Chalmers"})),
        "Patient.name",
        "structure",
    ),
    # formats.html#choice: one type of a choice element
    (
        "a choice with two values",
        _variant("Patient", lambda r: r.update(deceasedBoolean=False, deceasedDateTime="2020")),
        "Patient.deceasedDateTime",
        "structure",
    ),
    # extensibility.html: url required; ext-1 value[x] xor extension
    (
        "an extension without url",
        _variant("Patient", lambda r: r.update(extension=[{"valueString": "x"}])),
        "Patient.extension[0].url",
        "required",
    ),
    (
        "an extension with value and extensions",
        _variant(
            "Patient",
            lambda r: r.update(
                extension=[
                    {"url": "http://x.org/e", "valueString": "x", "extension": [{"url": "a", "valueString": "y"}]}
                ]
            ),
        ),
        "Patient.extension[0]",
        "invariant",
    ),
    # references.html: the target types of a Reference, and contained resources
    (
        "a reference to a type not allowed",
        _variant("ImagingStudy", lambda r: r.update(subject={"reference": "Practitioner/1"})),
        "ImagingStudy.subject.reference",
        "value",
    ),
    (
        "a contained resource nobody refers to (dom-3)",
        _variant(
            "Patient", lambda r: r.update(contained=[{"resourceType": "Organization", "id": "o1", "name": "ACME"}])
        ),
        "Patient.contained[0]",
        "invariant",
    ),
    (
        "an unknown element",
        _variant("Patient", lambda r: r.update(favouriteColour="blue")),
        "Patient.favouriteColour",
        "structure",
    ),
]


def test_the_valid_resources_the_variants_break_are_valid() -> None:
    for resource in VALID.values():
        assert _errors(resource) == [], resource["resourceType"]


def test_each_invalid_variant_is_a_400_naming_the_element(client: TestClient) -> None:
    """http.html#create: 400 for a resource that is not valid R4; the OperationOutcome names the element
    (operationoutcome.html: issue.expression) and says why."""
    wrong = {}
    for what, resource, expression, code in INVALID:
        response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
        issues = response.json().get("issue", [])
        got = (response.status_code, [(i["code"], i.get("expression")) for i in issues])
        if got != (400, [(code, [expression])]) or expression not in issues[0]["diagnostics"]:
            wrong[what] = got
    assert wrong == {}
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_a_transaction_with_one_invalid_entry_is_refused_whole_naming_the_entry(client: TestClient) -> None:
    """transaction.html: all or nothing; the entry's resource is located from the Bundle."""
    bad = _variant("Patient", lambda r: r.update(gender="bogus"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.gender"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_an_r4_evidence_is_accepted_which_the_r4b_models_refused(client: TestClient) -> None:
    """evidence.html (R4): status and exposureBackground are required; R4B's variableDefinition does not exist."""
    evidence = {"resourceType": "Evidence", "status": "draft", "exposureBackground": {"display": "adults over 50"}}
    assert client.post("/fhir/Evidence", json=evidence).status_code == 201
    r4b = dict(evidence, variableDefinition=[{"variableRole": {"text": "exposure"}}])
    assert client.post("/fhir/Evidence", json=r4b).json()["issue"][0]["expression"] == ["Evidence.variableDefinition"]


def test_primitive_extensions_align_with_their_values(client: TestClient) -> None:
    """json.html#primitive: ``_given`` carries the id and extensions of ``given``; null pads the other array."""
    patient = _variant(
        "Patient",
        lambda r: r["name"][0].update(
            given=["Peter", None], _given=[None, {"extension": [{"url": "http://x.org/e", "valueCode": "x"}]}]
        ),
    )
    assert client.post("/fhir/Patient", json=patient).status_code == 201
    patient["name"][0]["_given"] = [None]
    response = client.post("/fhir/Patient", json=patient)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.name[0].given"]


def test_unknown_elements_are_refused_whatever_the_handling_and_strict_refuses_warnings(client: TestClient) -> None:
    """http.html#Prefer (handling): unknown elements are refused in both modes (json.html lets a receiver
    refuse them; keeping them would serve invalid JSON, dropping them would lose data). ``handling=strict``
    also refuses what datatypes.html#string says SHOULD NOT be: control characters in a string."""
    strict = {"Prefer": "handling=strict"}
    unknown = _variant("Patient", lambda r: r.update(favouriteColour="blue"))
    for headers in ({}, strict, {"Prefer": "handling=lenient"}):
        response = client.post("/fhir/Patient", json=unknown, headers=headers)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Patient.favouriteColour"]
    bell = _variant("Patient", lambda r: r["name"][0].update(family="Chal\u0007mers"))
    assert client.post("/fhir/Patient", json=bell).status_code == 201
    refused = client.post("/fhir/Patient", json=bell, headers=strict)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Patient.name[0].family"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": bell, "request": {"method": "POST", "url": "Patient"}}],
    }
    refused = client.post("/fhir", json=bundle, headers=strict)
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.name[0].family"]


def test_bindings_that_cannot_be_enumerated_or_are_not_required_never_refuse() -> None:
    """terminologies.html#strength: extensible and preferred bindings accept any code; the four required
    value sets the package cannot enumerate (fhir_bridge/spec/SOURCE.md) accept any code too."""
    assert set(validator().not_enumerated) == {
        "http://hl7.org/fhir/ValueSet/mimetypes",
        "http://hl7.org/fhir/ValueSet/currencies",
        "http://hl7.org/fhir/ValueSet/ucum-units",
        "http://loinc.org/vs/LL379-9",
    }
    patient = _variant(
        "Patient",
        lambda r: r.update(
            maritalStatus={"coding": [{"system": "http://example.org/marital", "code": "it-is-complicated"}]},
            photo=[{"contentType": "image/x-made-up", "data": "AAAA"}],
            communication=[{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "tlh"}]}}],
        ),
    )
    assert _errors(patient) == []
    assert _errors(_variant("Patient", lambda r: r.update(gender="female"))) == []


_TEXT = st.text(alphabet=st.characters(max_codepoint=0x7F) | st.sampled_from("é€\u00a0\u2028"), max_size=40)
_SEEDS = st.sampled_from(
    ["2020-01-31", "2020-01-31T10:00:00Z", "male", "#p1", "http://x.org/a", "AAAA", "urn:oid:1.2", "a b", "x"]
)


@given(value=st.one_of(_TEXT, _SEEDS, st.builds(str.__add__, _SEEDS, _TEXT), st.builds(str.__add__, _TEXT, _SEEDS)))
@hypothesis_settings(max_examples=400, deadline=None)
def test_the_string_shortcut_never_accepts_what_the_full_check_refuses(value: str) -> None:
    """The one-regex acceptance of a string (per element) agrees with the full primitive check."""
    tables = validator().tables
    for element in (
        tables["Patient"].elements["birthDate"],  # date
        tables["Patient"].elements["gender"],  # code, required binding
        tables["HumanName"].elements["family"],  # string
        tables["Meta"].elements["lastUpdated"],  # instant
        tables["Reference"].elements["reference"],  # string
        tables["Extension"].elements["url"],  # uri (a plain property)
        tables["Meta"].elements["profile"],  # canonical: "#..." noted for dom-3
        tables["Attachment"].elements["data"],  # base64Binary
        tables["Identifier"].elements["value"],
    ):
        assert element.fast is not None
        if element.fast(value):
            run = _Run(strict=True)
            validator()._primitive(run, element, value, "Patient", element.key)
            assert run.issues == [], (element.key, value)
