"""The mapping language for real exports: HL7 v2 paths to any component, structured numerics, repeats
over segments and repeated fields, regex capture, coalesce, number conversion and shared value maps."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path

import pytest

from fhir_bridge.mapping.clinical import MappingError, MappingRegistry
from fhir_bridge.mapping.clinical.compiler import compile_document
from fhir_bridge.mapping.clinical.document import parse
from fhir_bridge.mapping.clinical.hl7v2 import Hl7v2Reader
from fhir_bridge.mapping.clinical.mapper import ClinicalMapper
from fhir_bridge.mapping.clinical.readers import CsvReader, ReaderOptions
from fhir_bridge.mapping.clinical.template import resolve
from fhir_bridge.privacy import AttributePolicy, Pseudonymiser

KEY = b"fhir-bridge-test-site-secret-0123456789abcdef"
DATA = Path(__file__).parent / "data" / "clinical"
SHIPPED_EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"


def _mapper(text: str) -> ClinicalMapper:
    mapping = compile_document(parse(textwrap.dedent(text), "test.yaml"))
    return ClinicalMapper(mapping, AttributePolicy(Pseudonymiser(KEY)), "urn:fhir-bridge:patient-id", None)


def _problems(text: str) -> list[str]:
    with pytest.raises(MappingError) as caught:
        _mapper(text)
    return [f"{p.pointer}: {p.message}" for p in caught.value.problems]


def _lab_records() -> list[dict]:
    with (DATA / "oru-r01-lab.hl7").open("rb") as stream:
        return [r.data for r in Hl7v2Reader().read(stream, ReaderOptions(encoding="utf-8"))]


def test_hl7_paths_reach_components_repetitions_and_segments_of_the_order():
    glucose, panel = _lab_records()
    assert resolve(glucose, "OBR-4.1") == (True, "1558-6")
    assert resolve(glucose, "OBR-4.3") == (True, "LN")
    assert resolve(glucose, "PID-3[1].1") == (True, "X99887766")  # the second repetition (from 0)
    assert resolve(glucose, "PID-3[1].4.1") == (True, "NATIONAL")
    assert resolve(glucose, "OBX[0].OBX-5.2") == (True, "182")  # a component inside a segment of a list
    assert resolve(panel, "OBX[2].OBX-3.2") == (True, "C reactive protein [Mass/volume] in Serum or Plasma")
    assert resolve(panel, "OBX[3].OBX-5") == (False, None)


def test_a_structured_numeric_keeps_its_number_and_its_comparator():
    glucose, panel = _lab_records()
    assert glucose["OBX"][0]["value"] == "182" and "comparator" not in glucose["OBX"][0]  # ^182
    crp = panel["OBX"][2]
    assert (crp["value"], crp["comparator"]) == ("0.5", "<")  # <^0.5


LAB = """
name: test
source: {format: hl7v2}
patient: {id: {$field: PID-3.1}}
resources:
  - name: result
    resourceType: Observation
    forEach: OBX
    if: {field: OBX-2, in: [NM, SN]}
    identifier: {value: [{$field: OBR-3.1}, {$field: OBX-1}]}
    template:
      status: final
      code: {coding: [{system: "http://loinc.org", code: {$field: OBX-3.1}}]}
      subject: {$reference: patient}
      valueQuantity:
        value: {$field: value, $type: decimal}
        comparator: {$field: comparator}
        unit: {$field: OBX-6.1}
      note: [{text: {$concat: ["result ", {$field: $index}, " of order ", {$field: OBR-3.1}]}}]
  - name: report
    resourceType: DiagnosticReport
    identifier: {value: {$field: OBR-3.1}}
    template:
      status: final
      code: {coding: [{system: "http://loinc.org", code: {$field: OBR-4.1}}]}
      subject: {$reference: patient}
      result: [{$reference: result}]
"""


def test_a_resource_is_repeated_over_the_obx_segments_of_each_order():
    mapper = _mapper(LAB)
    glucose, panel = (mapper.map(record) for record in _lab_records())
    assert not glucose.errors and not panel.errors
    observations = [p.resource for p in panel.produced if p.resource_type == "Observation"]
    assert [o["code"]["coding"][0]["code"] for o in observations] == ["718-7", "6690-2", "1988-5"]
    assert [o["valueQuantity"]["value"] for o in observations] == [13.2, 11.8, 0.5]
    assert observations[2]["valueQuantity"]["comparator"] == "<"
    assert observations[1]["note"][0]["text"] == "result 2 of order 1045814"
    assert len({o["id"] for o in observations}) == 3
    report = next(p.resource for p in panel.produced if p.resource_type == "DiagnosticReport")
    assert report["result"] == [{"reference": f"Observation/{o['id']}"} for o in observations]
    glucose_report = next(p.resource for p in glucose.produced if p.resource_type == "DiagnosticReport")
    assert glucose_report["code"]["coding"][0]["code"] == "1558-6"
    assert len(glucose_report["result"]) == 1


def test_a_resource_is_repeated_over_a_fields_repetitions_and_over_a_split_text():
    mapper = _mapper(
        """
        name: test
        patient: {id: {$field: PID-3.1}}
        resources:
          - name: id
            resourceType: Basic
            forEach: PID-3[*]
            identifier: {value: [{$field: PID-3.1}, {$field: PID-3.4.1}]}
            template: {code: {text: {$field: PID-3.5}}, subject: {$reference: patient}}
          - name: code
            resourceType: Basic
            forEach: {field: codes, split: ";"}
            identifier: {value: {$field: $item}}
            template: {code: {coding: [{system: "http://hl7.org/fhir/sid/icd-10", code: {$field: $item}}]}}
        """
    )
    record = {**_lab_records()[0], "codes": "C50.4; C77.3"}
    result = mapper.map(record)
    assert not result.errors
    kinds = [p.resource["code"].get("text") for p in result.produced if p.rule.name == "id"]
    assert kinds == ["MR", "NI"]
    codes = [p.resource["code"]["coding"][0]["code"] for p in result.produced if p.rule.name == "code"]
    assert codes == ["C50.4", "C77.3"]


TNM = """
name: test
patient: {id: {$field: pid}}
derived:
  tnm:
    $field: TNM
    $capture: >-
      (?x) (?:(?P<t_prefix>y?[cpr]?)T(?P<t>[0-4][a-d]?|X|is))?\\s*
      (?:(?P<n_prefix>y?[cpr]?)N(?P<n>[0-3][a-c]?|X))?\\s*
      (?:(?P<m_prefix>y?[cpr]?)M(?P<m>[01][a-d]?|X))?
maps:
  method: {c: clinical, p: pathological, yp: pathological after therapy}
resources:
  - name: t
    resourceType: Observation
    if: {field: tnm.t}
    identifier: {value: {$field: pid}}
    template:
      status: final
      method: {text: {$field: tnm.t_prefix, $map: method, $default: clinical}}
      code: {text: T}
      valueCodeableConcept: {text: {$concat: [{$field: tnm.t_prefix}, T, {$field: tnm.t}]}}
  - name: n
    resourceType: Observation
    if: {field: tnm.n}
    identifier: {value: {$field: pid}}
    template:
      status: final
      method: {text: {$field: tnm.n_prefix, $map: method, $default: clinical}}
      code: {text: N}
      valueCodeableConcept: {text: {$concat: [{$field: tnm.n_prefix}, N, {$field: tnm.n}]}}
  - name: m
    resourceType: Observation
    if: {field: tnm.m}
    identifier: {value: {$field: pid}}
    template:
      status: final
      method: {text: {$field: tnm.m_prefix, $map: method, $default: clinical}}
      code: {text: M}
      valueCodeableConcept: {text: {$field: TNM, $capture: '.*\\b(y?[cpr]?M[01X][a-d]?)$', $group: 1}}
"""


def test_one_regex_splits_a_tnm_string_into_t_n_and_m_with_their_prefixes():
    mapper = _mapper(TNM)

    def staged(text: str) -> dict[str, tuple[str, str]]:
        result = mapper.map({"pid": "P1", "TNM": text})
        assert not result.errors, result.errors
        return {
            p.rule.name: (p.resource["valueCodeableConcept"]["text"], p.resource["method"]["text"])
            for p in result.produced
        }

    assert staged("pT2 pN1a M0") == {
        "t": ("pT2", "pathological"),
        "n": ("pN1a", "pathological"),
        "m": ("M0", "clinical"),
    }
    assert staged("ypT1c ypN0") == {
        "t": ("ypT1c", "pathological after therapy"),
        "n": ("ypN0", "pathological after therapy"),
    }
    bad = mapper.map({"pid": "P1", "TNM": "T9 N0"})
    assert [(e.column, e.reason.split(" does")[0]) for e in bad.errors] == [("TNM", "'T9 N0'")]


def test_coalesce_takes_the_first_value_and_number_reads_a_decimal_comma():
    mapper = _mapper(
        """
        name: test
        patient: {id: {$coalesce: [{$field: pid}, {$field: old_pid}]}}
        resources:
          - name: size
            resourceType: Observation
            identifier: {value: {$field: id}}
            template:
              status: final
              code: {text: size}
              effectiveDateTime:
                $coalesce:
                  - {$field: measured, $type: dateTime, $formats: ["%d.%m.%Y"]}
                  - {$field: reported, $type: dateTime, $formats: ["%m/%Y"]}
              valueQuantity: {value: {$field: size, $type: number}, unit: mm}
        """
    )
    first = mapper.map({"pid": "", "old_pid": "P7", "id": "1", "measured": "", "reported": "03/2024", "size": "23,5"})
    assert not first.errors
    observation = first.produced[0].resource
    assert observation["effectiveDateTime"] == "2024-03" and observation["valueQuantity"]["value"] == 23.5
    second = mapper.map({"pid": "P7", "id": "1", "measured": "05.03.2024", "reported": "03/2024", "size": "23.5"})
    assert second.produced[0].resource["effectiveDateTime"] == "2024-03-05"
    assert second.patient == first.patient  # the same patient, whichever column named it
    assert "'2,3,4' is not a number" in mapper.map({"pid": "P7", "id": "1", "size": "2,3,4"}).errors[0].reason


def test_what_the_new_expressions_get_wrong_is_refused_before_any_data():
    problems = _problems(
        """
        name: test
        maps: {grade: {G1: well}}
        resources:
          - name: a
            resourceType: Observation
            forEach: {field: x}
            identifier: {value: {$field: id}}
            template:
              status: {$field: s, $map: grades}
              code: {text: {$field: c, $capture: "(?P<a>x)(y)", $group: b}}
              note: [{text: {$field: c, $capture: "(x)(y)"}}]
              method: {text: {$field: c, $capture: "(?P<a>x)", $map: grade}}
        """
    )
    assert problems == [
        "/resources/0/template/status/$map: no value map named 'grades' in the file's maps (known: grade)",
        "/resources/0/template/code/text/$group: $capture has no group 'b'",
        "/resources/0/template/note/0/text/$capture: without $group, $capture needs named groups: (?P<name>...)",
        "/resources/0/template/method/text/$map: $map applies to one value: name the $group of $capture",
    ]


def test_the_documented_tnm_example_makes_what_the_page_prints():
    page = (Path(__file__).parent.parent / "docs" / "clinical-data.md").read_text(encoding="utf-8")
    mapping = next(b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if b.startswith("name: tnm-example"))
    example = page[page.index(mapping) :]
    source = re.search(r"```csv\n(.*?)```", example, re.S)
    printed = re.search(r"```json\n(.*?)```", example, re.S)
    assert source and printed
    mapper = _mapper(mapping)
    made = []
    for record in CsvReader().read(io.BytesIO(source.group(1).encode()), ReaderOptions(delimiter=";")):
        result = mapper.map(record.data)
        assert not result.errors, result.errors
        for produced in result.produced:
            made.append({k: v for k, v in produced.resource.items() if k not in ("id", "identifier", "meta")})
    assert made == json.loads(printed.group(1))


def test_a_bad_value_that_several_resources_read_is_one_message():
    mapping = MappingRegistry.for_site().load("cancer-diagnosis")
    mapper = ClinicalMapper(mapping, AttributePolicy(Pseudonymiser(KEY)), "urn:fhir-bridge:patient-id", None)
    body = (SHIPPED_EXAMPLES / "cancer-diagnosis.csv").read_bytes().replace(b"12/03/2024", b"31/02/2024")
    record = next(CsvReader().read(io.BytesIO(body), ReaderOptions())).data
    result = mapper.map(record)  # the date is read by the Condition and five Observations
    assert [(e.column, e.reason) for e in result.errors] == [
        ("diagnosis_date", "'31/02/2024' is not a date in the formats %d/%m/%Y, iso")
    ]
