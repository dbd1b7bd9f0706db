"""A checked mapping document compiled into templates, with the checks a JSON Schema cannot make.

Names that references use must exist, regular expressions and date formats must work, resource
types must be FHIR R4's, and a Patient template may hold no name, contact or address: the Patient
of a pseudonymising site carries only its pseudonymised identifier, a generalised birth date and
other characteristics. Everything wrong is reported together, before any data is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_bridge.mapping.clinical.dates import DATE_TYPES, check_format
from fhir_bridge.mapping.clinical.document import Document, MappingError, MappingProblem, schema_problems
from fhir_bridge.mapping.clinical.template import (
    MISSING,
    ArrayNode,
    CoalesceNode,
    ConcatNode,
    Condition,
    Constant,
    Context,
    FieldNode,
    LookupNode,
    Node,
    ObjectNode,
    ReferenceNode,
)
from fhir_bridge.privacy.profile import load_rules
from fhir_bridge.spec.registry import resource_types

PATIENT = "patient"
ACSN_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203|ACSN"
# Patient elements that name, locate or reach a person: never mapped (the identifier comes from the identity rule).
PATIENT_FORBIDDEN = ("name", "telecom", "address", "photo", "contact", "identifier", "link")
ENGINE_ELEMENTS = ("resourceType", "id", "meta")


@dataclass(frozen=True)
class PatientRule:
    """How a record names its patient: the source id and the identifier system (constant or from an issuer)."""

    id: Node
    system: str | None
    issuer: Node | None


@dataclass(frozen=True)
class IdentifierRule:
    system: str
    parts: tuple[Node, ...]
    hashed: bool


@dataclass(frozen=True)
class ForEach:
    """Repeat a resource over a list of the record (HL7 segments, JSON arrays, repeated fields) or a split text."""

    path: str
    split: str | None = None


@dataclass(frozen=True)
class ResourceRule:
    name: str
    resource_type: str
    template: ObjectNode
    condition: Condition | None
    identifier: IdentifierRule | None  # None only for the Patient, whose identity is the patient rule's
    each: ForEach | None = None


@dataclass(frozen=True)
class Mapping:
    """A usable mapping: what the engine evaluates for each record."""

    name: str
    description: str
    source_format: str | None
    delimiter: str
    encoding: str
    timezone: ZoneInfo | None
    patient: PatientRule | None
    resources: tuple[ResourceRule, ...]
    origin: str
    derived: tuple[tuple[str, Node], ...] = ()  # values computed once per record, before the resources
    columns: frozenset[str] = frozenset()  # the fields the mapping reads (a CSV header must have them)
    concept_maps: frozenset[str] = frozenset()  # the ConceptMaps ($translate) the mapping needs, by url

    def rule(self, name: str) -> ResourceRule | None:
        return next((r for r in self.resources if r.name == name), None)

    def missing_columns(self, header: Sequence[str]) -> list[str]:
        """The fields the mapping reads that a file with this header lacks (a path ``col.x`` needs ``col``)."""
        names = set(header)

        def present(field: str) -> bool:
            return field in names or any(
                field.startswith(n) and field[len(n) : len(n) + 1] in (".", "[") for n in names
            )

        return sorted(field for field in self.columns if not present(field))


def _escape(value: str) -> str:
    """A value inside a FHIR search token (``\\`` ``,`` ``|`` ``$`` escaped)."""
    return re.sub(r"([\\,|$])", r"\\\1", value)


def _study_uid(context: Context, value: str) -> tuple[str, str]:
    uid = context.privacy.deidentify("StudyInstanceUID", value) or value
    return "identifier", f"urn:dicom:uid|{_escape('urn:oid:' + uid)}"


def _accession(context: Context, value: str) -> tuple[str, str]:
    stored = context.privacy.deidentify("AccessionNumber", value)
    return "identifier:of-type", f"{ACSN_TYPE}|{_escape(stored or value)}"


def _identifier(system: str | None) -> Any:
    def criterion(_context: Context, value: str) -> tuple[str, str]:
        return "identifier", f"{_escape(system)}|{_escape(value)}" if system else f"|{_escape(value)}"

    return criterion


class _Compiler:
    def __init__(self, document: Document, expected_name: str | None) -> None:
        self.document = document
        self.expected_name = expected_name
        self.problems: list[MappingProblem] = []
        self.names: set[str] = set()
        self.references: list[tuple[str, list[str | int]]] = []
        self.fields: set[str] = set()
        self.concept_maps: set[str] = set()
        self.maps: dict[str, Any] = document.data.get("maps", {})

    def problem(self, path: Sequence[str | int], message: str) -> None:
        self.problems.append(self.document.problem(path, message))

    # conditions and nodes -----------------------------------------------------------------------
    def regex(self, text: str, path: list[str | int]) -> re.Pattern[str] | None:
        try:
            return re.compile(text)
        except re.error as error:
            self.problem(path, f"not a valid regular expression: {error}")
            return None

    def condition(self, data: dict[str, Any] | None, path: list[str | int]) -> Condition | None:
        if data is None:
            return None
        tests = [k for k in ("present", "equals", "in", "matches") if k in data]
        if len(tests) > 1:
            self.problem(path, f"a condition tests one thing, not {' and '.join(tests)}")
        if "field" in data:
            self.fields.add(data["field"])
        return Condition(
            field=data.get("field"),
            present=data.get("present"),
            equals=_text(data["equals"]) if "equals" in data else None,
            among=frozenset(_text(v) for v in data["in"]) if "in" in data else None,
            matches=self.regex(data["matches"], [*path, "matches"]) if "matches" in data else None,
            every=tuple(self.condition(c, [*path, "all", i]) for i, c in enumerate(data.get("all", []))),  # type: ignore[misc]
            some=tuple(self.condition(c, [*path, "any", i]) for i, c in enumerate(data.get("any", []))),  # type: ignore[misc]
            negated=self.condition(data.get("not"), [*path, "not"]),
        )

    def node(self, data: Any, path: list[str | int]) -> Node:
        if isinstance(data, list):
            return ArrayNode([self.node(item, [*path, i]) for i, item in enumerate(data)])
        if not isinstance(data, dict):
            return Constant(data)
        if "$field" in data:
            return self.field(data, path)
        if "$concat" in data:
            parts = [self.node(item, [*path, "$concat", i]) for i, item in enumerate(data["$concat"])]
            return ConcatNode(parts, data.get("$separator", ""), self.condition(data.get("$if"), [*path, "$if"]))
        if "$reference" in data:
            self.references.append((data["$reference"], [*path, "$reference"]))
            return ReferenceNode(data["$reference"], self.condition(data.get("$if"), [*path, "$if"]))
        if "$lookup" in data:
            return self.lookup(data, path)
        if "$coalesce" in data:
            parts = [self.node(item, [*path, "$coalesce", i]) for i, item in enumerate(data["$coalesce"])]
            return CoalesceNode(parts, self.condition(data.get("$if"), [*path, "$if"]))
        items = [(key, self.node(value, [*path, key])) for key, value in data.items() if key != "$if"]
        return ObjectNode(items, self.condition(data.get("$if"), [*path, "$if"]))

    def field(self, data: dict[str, Any], path: list[str | int]) -> FieldNode:
        kind = data.get("$type", "string")
        formats = tuple(data.get("$formats", ["iso"]))
        if "$formats" in data and kind not in DATE_TYPES:
            self.problem([*path, "$formats"], f"$formats is for $type date, dateTime or instant, not {kind}")
        for index, pattern in enumerate(formats):
            why = check_format(pattern)
            if why:
                self.problem([*path, "$formats", index], why)
        keyword = data.get("$deidentify")
        if keyword is not None:
            if keyword == "PatientID":
                self.problem(
                    [*path, "$deidentify"], "patient ids are pseudonymised through the mapping's patient block"
                )
            elif keyword not in load_rules():
                self.problem([*path, "$deidentify"], f"{keyword!r} is not a DICOM keyword of the privacy table")
        self.fields.add(data["$field"])
        mapping = data.get("$map")
        if isinstance(mapping, str):  # a shared value map of the file's maps
            if mapping not in self.maps:
                known = ", ".join(sorted(self.maps)) or "none"
                self.problem([*path, "$map"], f"no value map named {mapping!r} in the file's maps (known: {known})")
            mapping = self.maps.get(mapping, {})
        capture = self.regex(data["$capture"], [*path, "$capture"]) if "$capture" in data else None
        group = data.get("$group")
        if group is not None:
            group = str(group)
            if capture is None:
                self.problem([*path, "$group"], "$group names a group of $capture")
            elif (int(group) > capture.groups) if group.isdigit() else (group not in capture.groupindex):
                self.problem([*path, "$group"], f"$capture has no group {group!r}")
        elif capture is not None:
            if not capture.groupindex:
                self.problem([*path, "$capture"], "without $group, $capture needs named groups: (?P<name>...)")
            for key in ("$map", "$translate", "$type"):
                if key in data:
                    self.problem([*path, key], f"{key} applies to one value: name the $group of $capture")
        translate = None
        if "$translate" in data:
            spec = data["$translate"]
            translate = (spec["conceptMap"], spec.get("system"), spec.get("target"))
            self.concept_maps.add(spec["conceptMap"])
            if mapping is not None:
                self.problem([*path, "$translate"], "a value is translated by $map or by $translate, not both")
        return FieldNode(
            path=data["$field"],
            condition=self.condition(data.get("$if"), [*path, "$if"]),
            required=data.get("$required", False),
            default=data.get("$default", MISSING),
            split=data.get("$split"),
            pattern=self.regex(data["$pattern"], [*path, "$pattern"]) if "$pattern" in data else None,
            mapping={_text(k): v for k, v in mapping.items()} if mapping is not None else None,
            unmapped=data.get("$unmapped", "error"),
            type=kind,
            formats=formats,
            join=data.get("$join"),
            deidentify=keyword,
            hashed=data.get("$hash", False),
            capture=capture,
            group=group,
            translate=translate,
        )

    def lookup(self, data: dict[str, Any], path: list[str | int]) -> LookupNode:
        spec = data["$lookup"]
        where = [*path, "$lookup"]
        resource_type = spec["resourceType"]
        if resource_type not in resource_types():
            self.problem([*where, "resourceType"], f"{resource_type!r} is not a FHIR R4 resource type")
        keys: list[tuple[str, Node, Any]] = []
        for key, criterion in (("studyInstanceUid", _study_uid), ("accessionNumber", _accession)):
            if key in spec:
                if resource_type != "ImagingStudy":
                    self.problem([*where, key], f"{key} finds an ImagingStudy, not a {resource_type}")
                keys.append((key, self.node(spec[key], [*where, key]), criterion))
        if "identifier" in spec:
            value = self.node(spec["identifier"]["value"], [*where, "identifier", "value"])
            keys.append(("identifier", value, _identifier(spec["identifier"].get("system"))))
        if not keys:
            self.problem(where, "a lookup needs studyInstanceUid, accessionNumber or identifier")
        return LookupNode(
            resource_type, keys, spec.get("optional", False), self.condition(data.get("$if"), [*path, "$if"])
        )

    # the document -----------------------------------------------------------------------------
    def resource(self, data: dict[str, Any], index: int, has_patient: bool) -> ResourceRule | None:
        path: list[str | int] = ["resources", index]
        name, resource_type = data["name"], data["resourceType"]
        if name in self.names:
            self.problem([*path, "name"], f"the name {name!r} is used twice")
        self.names.add(name)
        if resource_type not in resource_types():
            self.problem([*path, "resourceType"], f"{resource_type!r} is not a FHIR R4 resource type")
        if name == PATIENT and resource_type != "Patient":
            self.problem([*path, "name"], "the name 'patient' is the record's patient: give this resource another")
        template = data["template"]
        for element in ENGINE_ELEMENTS:
            if element in template:
                self.problem([*path, "template", element], f"{element} is set by fhir-bridge, not by the mapping")
        identifier = None
        if resource_type == "Patient":
            if not has_patient:
                self.problem(path, "a Patient resource needs the mapping's patient block (its pseudonymised identity)")
            if "identifier" in data:
                self.problem([*path, "identifier"], "a Patient's identifier is its pseudonymised patient id")
            for element in PATIENT_FORBIDDEN:
                if element in template:
                    self.problem(
                        [*path, "template", element],
                        f"Patient.{element} is never mapped: it would identify the patient",
                    )
        elif "identifier" not in data:
            self.problem(path, "each resource needs an identifier derived from the record (re-pushing then updates it)")
        else:
            spec = data["identifier"]
            parts = spec["value"] if isinstance(spec["value"], list) else [spec["value"]]
            identifier = IdentifierRule(
                spec.get("system") or f"urn:fhir-bridge:mapping:{self.document.data['name']}:{name}",
                tuple(self.node(p, [*path, "identifier", "value", i]) for i, p in enumerate(parts)),
                spec.get("hash", True),
            )
        node = self.node(template, [*path, "template"])
        assert isinstance(node, ObjectNode)
        each = None
        if "forEach" in data:
            spec = data["forEach"]
            each = ForEach(spec, None) if isinstance(spec, str) else ForEach(spec["field"], spec.get("split"))
            self.fields.add(each.path)
            if resource_type == "Patient":
                self.problem([*path, "forEach"], "a record has one patient: a Patient cannot be repeated")
        condition = self.condition(data.get("if"), [*path, "if"])
        return ResourceRule(name, resource_type, node, condition, identifier, each)

    def compile(self, source: str) -> Mapping:
        data = self.document.data
        if self.expected_name and data["name"] != self.expected_name:
            self.problem(["name"], f"the name {data['name']!r} differs from the file's name {self.expected_name!r}")
        zone = None
        if "timezone" in data:
            try:
                zone = ZoneInfo(data["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                self.problem(["timezone"], f"{data['timezone']!r} is not an IANA time zone")
        patient = None
        if "patient" in data:
            spec = data["patient"]
            patient = PatientRule(
                self.node(spec["id"], ["patient", "id"]),
                spec.get("system"),
                self.node(spec["issuer"], ["patient", "issuer"]) if "issuer" in spec else None,
            )
        derived = []
        for name, spec in data.get("derived", {}).items():
            derived.append((name, self.node(spec, ["derived", name])))
        rules = [self.resource(r, i, patient is not None) for i, r in enumerate(data["resources"])]
        for name, path in self.references:
            if name == PATIENT and patient is None:
                self.problem(path, "$reference: patient needs the mapping's patient block")
            elif name != PATIENT and name not in self.names:
                self.problem(path, f"no resource of this mapping is named {name!r}")
        if self.problems:
            raise MappingError(source, self.problems)
        source_spec = data.get("source", {})
        return Mapping(
            name=data["name"],
            description=data.get("description", ""),
            source_format=source_spec.get("format"),
            delimiter=source_spec.get("delimiter", ","),
            encoding=source_spec.get("encoding", "utf-8-sig"),
            timezone=zone,
            patient=patient,
            resources=tuple(r for r in rules if r is not None),
            origin=source,
            derived=tuple(derived),
            columns=frozenset(self._columns({name for name, _ in derived})),
            concept_maps=frozenset(self.concept_maps),
        )

    def _columns(self, derived: set[str]) -> set[str]:
        """The fields read from the source: not the derived values, nor a repeated item's ``$item`` and ``$index``."""
        return {f for f in self.fields if not f.startswith("$") and re.split(r"[.\[]", f, maxsplit=1)[0] not in derived}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def compile_document(document: Document, expected_name: str | None = None) -> Mapping:
    """The mapping, or MappingError with every problem (schema first: the rest needs a valid shape)."""
    problems = schema_problems(document)
    if problems:
        raise MappingError(document.source, problems)
    return _Compiler(document, expected_name).compile(document.source)
