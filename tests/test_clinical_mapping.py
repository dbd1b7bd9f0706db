"""Mapping files: the schema check with locations, the semantic checks, and what templates make of records."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from fhir_bridge import cli
from fhir_bridge.mapping.clinical import MappingError, MappingRegistry, ReaderOptions
from fhir_bridge.mapping.clinical.compiler import compile_document
from fhir_bridge.mapping.clinical.dates import DateProblem, to_fhir
from fhir_bridge.mapping.clinical.document import parse
from fhir_bridge.mapping.clinical.mapper import ClinicalMapper
from fhir_bridge.mapping.clinical.readers import CsvReader, JsonReader, NdjsonReader
from fhir_bridge.mapping.dicom import DicomMapper, MappingConfig
from fhir_bridge.privacy import AttributePolicy, Pseudonymiser

KEY = b"fhir-bridge-test-site-secret-0123456789abcdef"
SHIPPED = Path(__file__).parent.parent / "mappings"


def _mapping(text: str, name: str = "test.yaml"):
    return compile_document(parse(textwrap.dedent(text), name))


def _problems(text: str) -> list:
    with pytest.raises(MappingError) as caught:
        _mapping(text)
    return caught.value.problems


def _mapper(text: str, pseudonymise: bool = True, remap_uids: bool = False) -> ClinicalMapper:
    policy = AttributePolicy(Pseudonymiser(KEY), pseudonymise=pseudonymise, remap_uids=remap_uids)
    return ClinicalMapper(_mapping(text), policy, "urn:fhir-bridge:patient-id", None)


OBSERVATION = """
name: test
patient:
  id: {$field: pid}
resources:
  - name: obs
    resourceType: Observation
    identifier: {value: {$field: id}}
    template:
      status: {$field: status, $map: {F: final, P: preliminary}}
      code: {coding: [{system: "http://loinc.org", code: 21889-1}]}
      subject: {$reference: patient}
      effectiveDateTime: {$field: when, $type: dateTime, $formats: ["%d.%m.%Y %H:%M", "%d.%m.%Y", iso]}
      valueQuantity:
        value: {$field: size, $type: decimal}
        unit: mm
      note:
        - $if: {field: comment}
          text: {$field: comment}
"""


def test_the_shipped_mappings_are_valid():
    registry = MappingRegistry.for_site()
    assert {"radiology-report", "cancer-diagnosis", "patient-demographics", "radiology-report-hl7v2"} <= set(
        registry.names()
    )
    for name in registry.names():
        assert registry.check(registry.path(name)) == [], name


def test_every_schema_problem_is_reported_with_its_pointer_and_line():
    problems = _problems(
        """\
        name: Bad Name
        resources:
          - name: report
            resourceType: DiagnosticReport
            identifier: {value: {$field: id}}
            template:
              status: {$feild: status}
              code: {$field: code, $type: datetime}
          - name: other
            template: {}
        extra: 1
        """
    )
    found = {(p.pointer, p.line) for p in problems}
    assert ("/name", 1) in found
    assert ("", 1) in found  # 'extra' is not allowed (reported on the document)
    assert any(p.pointer == "/resources/0/template/status" and p.line == 7 and "$feild" in p.message for p in problems)
    assert any(p.pointer == "/resources/0/template/code/$type" and p.line == 8 for p in problems)
    assert any(p.pointer == "/resources/1" and "resourceType" in p.message for p in problems)


def test_semantic_problems_are_reported_together():
    problems = _problems(
        """\
        name: test
        patient: {id: {$field: pid}}
        timezone: Mars/Olympus
        resources:
          - name: person
            resourceType: Patient
            template:
              name: [{family: {$field: family}}]
              birthDate: {$field: born, $type: date, $formats: ["%d.%m"]}
          - name: obs
            resourceType: Observaton
            identifier: {value: {$field: id}}
            template:
              subject: {$reference: reportt}
              code: {text: {$field: code, $pattern: "[A-Z"}}
              note: [{text: {$field: x, $deidentify: PatientName}}]
          - name: bare
            resourceType: Condition
            template: {id: x}
        """
    )
    messages = {p.pointer: p.message for p in problems}
    assert "IANA" in messages["/timezone"]
    assert "never mapped" in messages["/resources/0/template/name"]
    assert "no year" in messages["/resources/0/template/birthDate/$formats/0"]
    assert "not a FHIR R4 resource type" in messages["/resources/1/resourceType"]
    assert "'reportt'" in messages["/resources/1/template/subject/$reference"]
    assert "regular expression" in messages["/resources/1/template/code/text/$pattern"]
    assert "privacy table" in messages["/resources/1/template/note/0/text/$deidentify"]
    assert "identifier" in messages["/resources/2"]
    assert "set by fhir-bridge" in messages["/resources/2/template/id"]
    assert all(p.line for p in problems)


def test_mappings_check_command_reports_lines_and_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nresources:\n  - name: a\n    resourceType: Observation\n    template: {status: {$fild: x}}\n"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "broken",\n "resources": [}\n')
    assert cli.main(["mappings", "check", str(SHIPPED / "radiology-report.yaml"), str(bad), str(broken)]) == 1
    out = capsys.readouterr().out
    assert "radiology-report.yaml: ok" in out
    assert f"{bad}:5: /resources/0/template/status:" in out
    assert f"{bad}:3: /resources/0: each resource needs an identifier" not in out  # schema problems come first
    assert f"{broken}:2: /: not valid" in out


def test_templates_map_values_dates_and_leave_out_empty_parts():
    mapper = _mapper(OBSERVATION)
    result = mapper.map(
        {"pid": "P1", "id": "7", "status": "F", "when": "05.03.2024 14:30", "size": "23", "comment": ""}
    )
    assert result.errors == []
    observation = result.produced[0].resource
    assert observation["status"] == "final"
    assert observation["effectiveDateTime"] == "2024-03-05"  # no time zone known: the date only
    assert observation["valueQuantity"] == {"value": 23, "unit": "mm"}
    assert "note" not in observation  # the conditional part
    assert observation["subject"]["reference"] == f"Patient/{result.patient['id']}"
    empty = mapper.map({"pid": "P1", "id": "8", "status": "P", "when": "2024", "size": ""})
    assert "valueQuantity" not in empty.produced[0].resource  # only constants left: the element goes
    assert empty.produced[0].resource["effectiveDateTime"] == "2024"


def test_bad_values_are_reported_with_their_column():
    mapper = _mapper(OBSERVATION)
    result = mapper.map({"pid": "P1", "id": "9", "status": "Z", "when": "31.02.2024", "size": "big"})
    reasons = {e.column: e.reason for e in result.errors}
    assert "unknown code 'Z'" in reasons["status"]
    assert "is not a date" in reasons["when"]
    assert "is not a decimal" in reasons["size"]
    missing = mapper.map({"id": "9", "status": "F"})
    assert [(e.column, e.reason) for e in missing.errors] == [("pid", "the patient id is missing")]


def test_an_empty_patient_id_hides_none_of_the_rows_other_problems_and_none_is_said_twice():
    mapper = _mapper(OBSERVATION)
    result = mapper.map({"id": "9", "status": "Z", "when": "31.02.2024", "size": "big", "pid": ""})
    problems = [(e.column, e.reason.split(" (")[0]) for e in result.errors]
    assert problems == [
        ("pid", "the patient id is missing"),
        ("status", "unknown code 'Z'"),  # and not again as "status is required" by the validation
        ("when", "'31.02.2024' is not a date in the formats %d.%m.%Y %H:%M, %d.%m.%Y, iso"),
        ("size", "'big' is not a decimal"),
    ]
    empty_status = mapper.map({"id": "9"})
    assert [e.column for e in empty_status.errors] == ["pid", "status"]  # an empty required element: its column


def test_an_identifier_column_left_empty_is_one_problem_naming_every_resource_that_needs_it():
    mapper = _mapper(
        """
        name: test
        patient: {id: {$field: pid}}
        resources:
          - name: a
            resourceType: Observation
            identifier: {value: [{$field: pid}, {$field: id}]}
            template: {status: final, code: {text: a}, subject: {$reference: patient}}
          - name: b
            resourceType: Observation
            identifier: {value: [{$field: pid}, {$field: id}]}
            template: {status: {$field: status, $map: {F: final}}, code: {text: b}, focus: [{$reference: a}]}
        """
    )
    result = mapper.map({"pid": "", "id": "", "status": "Q"})
    assert [(e.column, e.reason) for e in result.errors] == [
        ("pid", "the patient id is missing"),
        ("id", "is empty, but the identifier of Observation (a), Observation (b) needs it"),
        ("status", "unknown code 'Q' (known: F)"),
    ]


def test_the_patient_is_the_one_the_dicom_path_makes():
    policy = AttributePolicy(Pseudonymiser(KEY))
    clinical = ClinicalMapper(_mapping(OBSERVATION), policy, "urn:fhir-bridge:patient-id", None)
    dicom = DicomMapper(policy, MappingConfig("urn:fhir-bridge:patient-id"))
    attributes = dicom.policy.apply(
        {"PatientID": "PID-00001", "StudyInstanceUID": "1.2.3"}, "urn:fhir-bridge:patient-id"
    )
    assert clinical.map({"pid": "PID-00001", "id": "1"}).patient == dicom.patient(attributes) | {
        "meta": clinical.map({"pid": "PID-00001", "id": "1"}).patient["meta"]
    }
    assert "PID-00001" not in str(clinical.map({"pid": "PID-00001", "id": "1"}).patient)


def test_identifiers_are_keyed_hashes_unless_told_otherwise():
    hashed = _mapper(OBSERVATION).map({"pid": "P1", "id": "R-77"}).produced[0].resource["identifier"][0]
    assert hashed["system"] == "urn:fhir-bridge:mapping:test:obs"
    assert "R-77" not in hashed["value"] and len(hashed["value"]) == 64
    plain = _mapper(
        OBSERVATION.replace("identifier: {value: {$field: id}}", "identifier: {value: {$field: id}, hash: false}")
    )
    assert plain.map({"pid": "P1", "id": "R-77"}).produced[0].resource["identifier"][0]["value"] == "R-77"


def test_lookups_use_the_values_the_dicom_path_stores():
    text = """
    name: test
    resources:
      - name: report
        resourceType: DiagnosticReport
        identifier: {value: {$field: id}}
        template:
          status: final
          code: {text: x}
          imagingStudy:
            - $lookup: {resourceType: ImagingStudy, studyInstanceUid: {$field: uid}, accessionNumber: {$field: acc}}
    """
    remapping = _mapper(text, remap_uids=True)
    lookup = remapping.map({"id": "1", "uid": "1.2.3", "acc": "A1"}).lookups[0]
    pseudonymiser = Pseudonymiser(KEY)
    assert lookup.criteria == [
        ("identifier", f"urn:dicom:uid|urn:oid:{pseudonymiser.uid('1.2.3')}"),
        (
            "identifier:of-type",
            f"http://terminology.hl7.org/CodeSystem/v2-0203|ACSN|{pseudonymiser.keyed_hash('AccessionNumber', 'A1')}",
        ),
    ]
    plain = _mapper(text, pseudonymise=False).map({"id": "1", "uid": "1.2.3", "acc": "A,1"}).lookups[0]
    assert plain.criteria[1][1].endswith("|A\\,1")  # escaped for the search


def test_a_patient_keeps_no_full_birth_date():
    text = """
    name: test
    patient: {id: {$field: pid}}
    resources:
      - name: person
        resourceType: Patient
        template:
          birthDate: {$field: born, $type: date, $formats: ["%d.%m.%Y"]}
    """
    patient = _mapper(text).map({"pid": "P1", "born": "11.01.1941"}).produced[0].resource
    assert patient["birthDate"] == "1941"


@pytest.mark.parametrize(
    ("text", "kind", "formats", "expected"),
    [
        ("2024-03-05T14:30:00+01:00", "dateTime", ("iso",), "2024-03-05T14:30:00+01:00"),
        ("2024-03", "date", ("iso",), "2024-03"),
        ("20240305143000+0100", "instant", ("hl7",), "2024-03-05T14:30:00+01:00"),
        ("202403051430", "dateTime", ("hl7",), "2024-03-05"),
        ("05/03/2024", "date", ("%d/%m/%Y",), "2024-03-05"),
        ("03/2024", "date", ("%m/%Y",), "2024-03"),
    ],
)
def test_dates_keep_their_precision(text, kind, formats, expected):
    assert to_fhir(text, kind, formats, None) == expected


def test_an_instant_needs_a_time_zone_and_a_zone_places_local_times():
    from zoneinfo import ZoneInfo

    with pytest.raises(DateProblem):
        to_fhir("2024-03-05T14:30:00", "instant", ("iso",), None)
    assert to_fhir("2024-07-05T14:30", "instant", ("iso",), ZoneInfo("Europe/Rome")) == "2024-07-05T14:30:00+02:00"


def test_csv_reader_streams_rows_with_their_lines():
    data = b'a,b\n1,"two\nlines"\n\n3\n4,5,6\n'
    records = list(CsvReader().read(io.BytesIO(data), ReaderOptions()))
    assert [(r.row, r.line) for r in records] == [(1, 2), (2, 5), (3, 6)]
    assert records[0].data == {"a": "1", "b": "two\nlines"}
    assert records[1].data == {"a": "3", "b": ""}
    assert records[2].data is None and "3 fields" in records[2].error


def test_json_readers_read_element_by_element_and_report_bad_parts():
    body = b'[{"a": 1}, {"a": "' + b"x" * 200_000 + b'"}, 3, {"a": 4}]'
    records = list(JsonReader().read(io.BytesIO(body), ReaderOptions()))
    assert [r.row for r in records] == [1, 2, 3, 4]
    assert records[2].data is None and records[3].data == {"a": 4}
    assert [r.data for r in JsonReader().read(io.BytesIO(b' {"a": 1} '), ReaderOptions())] == [{"a": 1}]
    broken = list(JsonReader().read(io.BytesIO(b'[{"a": 1}, {"a": '), ReaderOptions()))
    assert broken[0].data == {"a": 1} and "not valid JSON" in broken[1].error
    lines = list(NdjsonReader().read(io.BytesIO(b'{"a": 1}\n\nnot json\n{"a": 2}\n'), ReaderOptions()))
    assert [(r.row, r.line, r.data) for r in lines] == [(1, 1, {"a": 1}), (2, 3, None), (3, 4, {"a": 2})]


def test_invalid_fhir_is_reported_at_the_column_it_came_from():
    mapper = _mapper(OBSERVATION.replace("{$field: size, $type: decimal}", "{$field: size}"))
    result = mapper.map({"pid": "P1", "id": "1", "size": "big"})
    assert [e.column for e in result.errors] == ["size"]
    assert "would not be valid FHIR" in result.errors[0].reason
    assert "Observation.valueQuantity.value" in result.errors[0].reason
