"""DICOM -> FHIR mapping, the code tables kept as data, pseudonyms, and order-independent study merging."""

from __future__ import annotations

import copy
import io
import random
from zoneinfo import ZoneInfo

import pytest
from pydicom.sr._concepts_dict import concepts

from fhir_bridge.dicom.reader import ATTRIBUTES, read_stream
from fhir_bridge.mapping import DicomMapper, MappingConfig, StudyMerge, fill_missing
from fhir_bridge.mapping.codes import body_parts, body_site, fhir_datetime, lateralities
from fhir_bridge.mapping.dicom import patient_system
from fhir_bridge.privacy import AttributePolicy, Pseudonymiser, load_rules
from fhir_bridge.spec.validation import validate_resource
from tests.dicom_samples import Patient, instance, uid

KEY = b"mapping-test-site-secret-0123456789"
SYSTEM = "urn:fhir-bridge:patient-id"
WADO = "https://pacs.hospital.example/dicom-web"


def _mapper(**options: object) -> DicomMapper:
    policy = AttributePolicy(Pseudonymiser(KEY), **options)  # type: ignore[arg-type]
    return DicomMapper(policy, MappingConfig(SYSTEM, WADO, ZoneInfo("Europe/Madrid")))


def _attributes(mapper: DicomMapper, base: str = "CT_small.dcm", **overrides: object) -> dict:
    patient = Patient("MRN-0042", "Garcia^Ana", "19620415", "F")
    data = instance(base, patient=patient, study_uid=uid(9), series_uid=uid(9, 1), sop_uid=uid(9, 1, 1), **overrides)
    return mapper.deidentify(read_stream(io.BytesIO(data)))


def test_the_study_carries_the_imaging_study_mapping():
    mapper = _mapper()
    attributes = _attributes(
        mapper,
        AccessionNumber="ACC-77",
        BodyPartExamined="CHEST",
        Laterality="L",
        TimezoneOffsetFromUTC="+0100",
        StudyDate="20240305",
        StudyTime="101530.25",
    )
    resources = mapper.study([attributes])
    study = validate_resource(resources.study, "ImagingStudy")
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{uid(9)}"}
    accession = study["identifier"][1]
    assert accession["type"]["coding"][0]["code"] == "ACSN" and accession["value"] != "ACC-77"  # keyed hash
    assert study["status"] == "available"
    assert study["started"] == "2024-03-05T10:15:30.25+01:00"
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]
    assert study["numberOfSeries"] == 1 and study["numberOfInstances"] == 1
    assert study["meta"]["security"][0]["code"] == "PSEUDED"
    assert study["endpoint"] == [{"reference": f"Endpoint/{mapper.endpoint()['id']}"}]
    series = study["series"][0]
    assert series["bodySite"] == {"system": "http://snomed.info/sct", "code": "816094009", "display": "Thorax"}
    assert series["laterality"]["code"] == "7771000"
    assert series["performer"][0]["actor"]["reference"] == f"Device/{resources.devices[0]['id']}"
    assert series["endpoint"] == study["endpoint"]
    instance_ = series["instance"][0]
    assert instance_["sopClass"] == {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}
    assert instance_["uid"] == uid(9, 1, 1) and instance_["number"] == 1
    assert instance_["title"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert resources.devices[0]["manufacturer"] == "GE MEDICAL SYSTEMS"
    validate_resource(resources.devices[0], "Device")
    validate_resource(mapper.endpoint(), "Endpoint")


def test_the_patient_is_pseudonymised():
    mapper = _mapper()
    patient = validate_resource(mapper.study([_attributes(mapper)]).patient, "Patient")
    assert patient["identifier"] == [
        {"system": SYSTEM, "value": Pseudonymiser(KEY).patient_identifier(SYSTEM, "MRN-0042")}
    ]
    assert patient["birthDate"] == "1962"
    assert patient["gender"] == "female"
    assert "name" not in patient
    year_month = _mapper()
    year_month.policy.pseudonymiser.birth_date_precision = "year-month"
    assert year_month.study([_attributes(year_month)]).patient["birthDate"] == "1962-04"


def test_descriptions_and_referrer_follow_the_privacy_settings():
    extra = {"StudyDescription": "Thorax staging", "ReferringPhysicianName": "Ref^Erin"}
    dropped = _mapper()
    study = dropped.study([_attributes(dropped, **extra)]).study
    assert "description" not in study and "referrer" not in study
    kept = _mapper(keep_descriptions=True)
    assert kept.study([_attributes(kept, **extra)]).study["description"] == "Thorax staging"
    plain = _mapper(pseudonymise=False)
    study = plain.study([_attributes(plain, **extra)]).study
    assert study["referrer"] == {"display": "Erin Ref"} and "meta" not in study


def test_time_without_zone_uses_the_configured_zone_or_keeps_the_date():
    assert fhir_datetime("20240705", "0930", "", ZoneInfo("Europe/Madrid")) == "2024-07-05T09:30:00+02:00"
    assert fhir_datetime("20240105", "0930", "", ZoneInfo("Europe/Madrid")) == "2024-01-05T09:30:00+01:00"
    assert fhir_datetime("20240105", "0930", "", None) == "2024-01-05"
    assert fhir_datetime("2024.01.05", "09:30:01", "-0500", None) == "2024-01-05T09:30:01-05:00"
    assert fhir_datetime("20241341", "0930", "", None) is None


def test_body_parts_and_lateralities_are_the_dicom_standards_codes():
    """Every row of the hand-written tables must carry a code and meaning the DICOM standard defines."""
    known = {code: meaning.lower() for entry in concepts["SCT"].values() for code, (meaning, _) in entry.items()}
    meanings: dict[str, set[str]] = {}
    for entry in concepts["SCT"].values():
        for code, (meaning, _) in entry.items():
            meanings.setdefault(code, set()).add(meaning.lower())
    for table in (body_parts(), lateralities()):
        for term, (code, meaning) in table.items():
            assert code in known, f"{term}: {code} is not a SNOMED CT concept of the DICOM standard"
            assert meaning.lower() in meanings[code], f"{term}: {code} is not {meaning!r} in DICOM"
    assert len(body_parts()) >= 60


@pytest.mark.parametrize(
    ("term", "code"), [("CHEST", "816094009"), ("WHOLE BODY", "38266002"), ("l-spine", "122496007"), ("ELBOWS", None)]
)
def test_body_part_terms_are_matched_leniently(term, code):
    found = body_site(term, None)
    assert (found or {}).get("code") == code


def test_an_sct_anatomic_region_wins_over_body_part_examined():
    region = [{"CodeValue": "76752008", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Breast"}]
    assert body_site("CHEST", region)["code"] == "76752008"


def test_every_attribute_read_has_a_privacy_decision():
    assert set(ATTRIBUTES) <= set(load_rules())


@pytest.mark.parametrize(
    ("attributes", "system"),
    [
        ({}, SYSTEM),
        ({"IssuerOfPatientID": "HOSP A"}, f"{SYSTEM}:HOSP_A"),
        ({"IssuerOfPatientID": "1.2.840.99.1"}, "urn:oid:1.2.840.99.1"),
        ({"IssuerOfPatientID": "https://h.example/mrn"}, "https://h.example/mrn"),
        ({"IssuerOfPatientID": "X", "UniversalEntityID": "2.16.1", "UniversalEntityIDType": "ISO"}, "urn:oid:2.16.1"),
    ],
)
def test_the_patient_identifier_system_is_never_empty(attributes, system):
    assert patient_system(attributes, SYSTEM) == system


def test_pseudonyms_are_keyed_stable_and_separate_issuers():
    one, other = Pseudonymiser(KEY), Pseudonymiser(b"another-site-secret-0123456789")
    assert one.patient_identifier(SYSTEM, "123") == Pseudonymiser(KEY).patient_identifier(SYSTEM, "123")
    assert one.patient_identifier(SYSTEM, "123") != other.patient_identifier(SYSTEM, "123")
    assert one.patient_identifier(SYSTEM, "123") != one.patient_identifier("urn:oid:1.2.3", "123")
    remapped = one.uid("1.2.840.113619.2.55.3")
    assert remapped.startswith("2.25.") and len(remapped) <= 64 and remapped == one.uid("1.2.840.113619.2.55.3")
    assert one.birth_date("19991231") == "1999" and one.birth_date("garbage") is None


def _instance_studies(count: int) -> list[dict]:
    mapper = _mapper()
    studies = []
    for number in range(count):
        series = number % 3
        attributes = _attributes(mapper, "MR_small.dcm", SeriesNumber=series + 1, InstanceNumber=number + 1)
        attributes["SeriesInstanceUID"] = uid(9, series + 1)
        attributes["SOPInstanceUID"] = uid(9, series + 1, number + 1)
        studies.append(mapper.instance_study(attributes, mapper.patient(attributes), mapper.device(attributes)))
    return studies


def test_merging_is_independent_of_order_batches_and_duplicates():
    parts = _instance_studies(30)
    reference = StudyMerge()
    for part in copy.deepcopy(parts):
        reference.add(part)
    expected = reference.result()
    assert expected["numberOfInstances"] == 30 and expected["numberOfSeries"] == 3
    generator = random.Random(3)
    for _ in range(5):
        shuffled = copy.deepcopy(parts + generator.sample(parts, 10))  # some twice
        generator.shuffle(shuffled)
        cut = generator.randint(1, len(shuffled) - 1)
        first, second = StudyMerge(), StudyMerge()
        for part in shuffled[:cut]:
            first.add(part)
        for part in shuffled[cut:]:
            second.add(part)
        stored = first.result()
        merged = StudyMerge(stored)
        merged.add(second.result())
        assert merged.result() == expected
    again = StudyMerge(copy.deepcopy(expected))
    again.add(copy.deepcopy(parts[0]))
    assert again.result() == expected  # re-adding what is there changes nothing


def test_a_stored_value_is_never_overwritten():
    stored = {
        "resourceType": "Patient",
        "id": "p",
        "gender": "female",
        "meta": {"versionId": "3", "tag": [{"code": "x"}]},
    }
    merged = fill_missing(stored, {"resourceType": "Patient", "id": "p", "gender": "male", "birthDate": "1970"})
    assert merged == {
        "resourceType": "Patient",
        "id": "p",
        "gender": "female",
        "birthDate": "1970",
        "meta": {"tag": [{"code": "x"}]},
    }
