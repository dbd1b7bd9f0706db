"""The FHIR definitions: every R4 search expression compiles; index entries match the spec's meaning."""

from __future__ import annotations

import pytest

from fhir_bridge.search.index import index_entries
from fhir_bridge.search.values import date_range, normalize_string, number_range
from fhir_bridge.spec.fhirpath import FhirPathError, Item, compile_expression
from fhir_bridge.spec.registry import resource_types, search_parameters
from tests.conftest import example


def test_every_r4_search_expression_compiles_for_every_type():
    compiled = 0
    for resource_type in resource_types():
        for parameter in search_parameters(resource_type).values():
            compiled += parameter.evaluate is not None
    assert compiled > 2500


def test_unsupported_fhirpath_is_refused_at_compile_time():
    with pytest.raises(FhirPathError):
        compile_expression("Patient.name.select(given)", resource_types())


def test_choice_types_and_resolve_filters():
    observation = example("Observation-example")
    parameters = search_parameters("Observation")
    quantities = parameters["value-quantity"].evaluate([Item(observation)])
    assert [q.value["value"] for q in quantities] == [185]
    assert parameters["value-string"].evaluate([Item(observation)]) == []
    assert [r.value["reference"] for r in parameters["patient"].evaluate([Item(observation)])] == ["Patient/example"]
    group_subject = dict(observation, subject={"reference": "Group/g1"})
    assert parameters["patient"].evaluate([Item(group_subject)]) == []


def test_patient_deceased_expression():
    deceased = search_parameters("Patient")["deceased"].evaluate
    assert deceased([Item({"resourceType": "Patient", "deceasedBoolean": True})])[0].value is True
    assert deceased([Item({"resourceType": "Patient", "deceasedDateTime": "2020"})])[0].value is True
    assert deceased([Item({"resourceType": "Patient", "deceasedBoolean": False})])[0].value is False


def test_imaging_study_index_entries():
    entries = index_entries(example("ImagingStudy-example"))
    tokens = {(e["param"], e["system"], e["code"]) for e in entries["token"]}
    assert ("modality", "http://dicom.nema.org/resources/ontology/DCM", "CT") in tokens
    assert ("identifier", "urn:dicom:uid", "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045") in tokens
    references = {(e["param"], e["target_type"], e["target_id"]) for e in entries["reference"]}
    assert ("subject", "Patient", "dicom") in references
    assert ("patient", "Patient", "dicom") in references
    assert [e["param"] for e in entries["date"]] == ["started"]


def test_date_ranges_follow_precision_and_time_zone():
    year = date_range("2024")
    assert year == (date_range("2024-01-01T00:00:00Z")[0], date_range("2024-12-31T23:59:59.999999Z")[1])
    assert date_range("2024-02")[1] + 1 == date_range("2024-03")[0]
    assert date_range("2024-05-01T10:00:00+02:00")[0] == date_range("2024-05-01T08:00:00Z")[0]
    assert date_range("2024-05-01T08:00:00")[0] == date_range("2024-05-01T08:00:00Z")[0]  # no zone: UTC
    assert date_range("2024-13") is None
    assert date_range("tomorrow") is None


def test_number_ranges_use_implicit_precision():
    assert number_range("100") == (100.0, 99.5, 100.5)
    assert number_range("1.50") == (1.5, 1.495, 1.505)
    assert number_range("abc") is None


def test_string_normalisation_ignores_case_and_accents():
    assert normalize_string("Ærøskøbing MÜLLER") == normalize_string("ærøskøbing muller")
    assert normalize_string("Élodie") == "elodie"
