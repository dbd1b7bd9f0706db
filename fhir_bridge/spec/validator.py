"""Validate FHIR R4 4.0.1 JSON resources against the specification's own definitions.

The rules come from ``spec/data/structure.json.gz`` (derived from the R4 StructureDefinitions, ValueSets
and expansions by ``generate_structure.py``), compiled once into one table per type: structure (unknown
elements), cardinality, types and their JSON representation (json.html), choice types, primitive
regexes and bounds, ``_name`` primitive extensions, contained and nested resources, Reference targets
and required bindings (terminologies.html#required; extensible and preferred bindings never refuse).

What the definitions do not carry as data is written here, each with the page that says it:
- json.html: no empty objects, arrays or strings; ``null`` only to align a primitive array with its
  ``_name`` array; a single element is not an array and vice versa.
- ele-1 (an element has a value or children) and ext-1 (an extension has a value or extensions, not both).
- references.html: the shape of ``Reference.reference`` (``#id``, ``Type/id[/_history/v]``, ``Type?query``
  for conditional references, an absolute URI) and its target type; ref-1 (a local reference resolves
  to a contained resource); dom-2, dom-3, dom-4, dom-5 (contained resources).
- narrative.html#xhtml: ``div`` is an XHTML ``div`` element (its content model, txt-1, is not checked).
- datatypes.html#string: a string holds no NUL (nor can PostgreSQL store it); other control characters
  are a warning (the spec says SHOULD NOT), an error only under ``strict``.

Unknown elements are errors in every mode: json.html leaves a receiver free to refuse or ignore them,
keeping them would serve invalid JSON and dropping them would lose data silently (HAPI's lenient parser
does; Blaze refuses them).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

MAX_ISSUES = 50
STRING, BOOLEAN, INTEGER, DECIMAL = range(4)
PRIMITIVE, COMPLEX, RESOURCE, PRIMITIVE_EXTENSION = range(4)
PLAIN, EXTENSION, REFERENCE = range(3)
_JSON_KINDS = {"string": STRING, "boolean": BOOLEAN, "integer": INTEGER, "decimal": DECIMAL}
_JSON_NAMES = ("a JSON string", "a JSON boolean", "a JSON integer", "a JSON number")
# Control characters a string SHOULD NOT hold (datatypes.html#string): all below 32 but tab, LF and CR.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_XHTML_DIV = re.compile(r"\s*<div\s[^>]*xmlns\s*=\s*[\"']http://www\.w3\.org/1999/xhtml[\"']")
_ID = r"[A-Za-z0-9\-.]{1,64}"
# references.html#literal: Type/id[/_history/vid], possibly after a base URL; Type?query is conditional
_RELATIVE = re.compile(rf"(?:(?:https?://\S*?/)?)([A-Z][A-Za-z]+)/{_ID}(?:/_history/{_ID})?")
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: ``severity`` error or warning, ``code`` an OperationOutcome issue type (structure,
    required, value, code-invalid, invariant, invalid), ``expression`` a FHIRPath-like location."""

    severity: str
    code: str
    expression: str
    message: str


class _Primitive:
    __slots__ = ("extensible", "fullmatch", "is_xhtml", "json", "max_length", "maximum", "minimum", "name")

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.json = _JSON_KINDS[data["json"]]
        regex = data.get("regex")
        # the spec's regexes are Java's: \s and \S are ASCII-only, and a whole value must match
        self.fullmatch: Callable[[str], Any] | None = re.compile(regex, re.ASCII).fullmatch if regex else None
        self.minimum: int | None = data.get("minValue")
        self.maximum: int | None = data.get("maxValue")
        self.max_length: int | None = data.get("maxLength")
        self.extensible: bool = data["extensible"]
        self.is_xhtml = name == "xhtml"


class _Element:
    __slots__ = (
        "binding",
        "choice",
        "codes",
        "codings",
        "fast",
        "key",
        "kind",
        "local",
        "many",
        "max",
        "primitive",
        "table",
        "targets",
        "variant",
    )

    def __init__(self, key: str, kind: int, many: bool, maximum: int | None) -> None:
        self.key = key
        self.kind = kind
        self.many = many
        self.max = maximum
        self.primitive: _Primitive | None = None
        self.table: _Table | None = None
        self.choice: str | None = None  # the choice element's name (``value`` for ``value[x]``)
        self.variant = key.removeprefix("_")
        self.codes: frozenset[str] | None = None  # code elements with an enumerable required binding
        self.codings: frozenset[tuple[str, str]] | None = None  # Coding and CodeableConcept ones
        self.binding: str | None = None
        self.targets: frozenset[str] | None = None
        self.local = False  # a uri-like value starting with "#" may point at a contained resource (dom-3)
        # accepts a valid string in one C call (regex, no control character, length), or None: the full check
        self.fast: Callable[[str], Any] | None = None


class _Table:
    __slots__ = ("check", "elements", "name", "required", "resource")

    def __init__(self, name: str, resource: bool) -> None:
        self.name = name
        self.elements: dict[str, _Element] = {}
        self.required: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self.resource = resource
        self.check = EXTENSION if name == "Extension" else REFERENCE if name == "Reference" else PLAIN


class _Frame:
    """Per resource (not per contained one): contained ids and the local references seen."""

    __slots__ = ("contained", "pointers", "references")

    def __init__(self) -> None:
        self.contained: list[tuple[str, str]] = []  # (id, expression)
        self.references: list[tuple[str, str]] = []  # local Reference.reference values (ref-1), with their path
        self.pointers: list[str] = []  # other uri-like values starting with "#" (dom-3)


class _Run:
    __slots__ = ("errors", "frame", "issues", "strict")

    def __init__(self, strict: bool) -> None:
        self.issues: list[Issue] = []
        self.strict = strict
        self.frame = _Frame()
        self.errors = 0

    def error(self, code: str, path: str, message: str) -> None:
        self.errors += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue("error", code, path, message))

    def warning(self, code: str, path: str, message: str) -> None:
        if self.strict:
            self.error(code, path, message)
        elif len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue("warning", code, path, message))


class Validator:
    """Element tables of every R4 resource and data type, compiled once; ``validate`` walks a resource."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.fhir_version: str = data["fhirVersion"]
        self.primitives = {name: _Primitive(name, p) for name, p in data["primitives"].items()}
        resource_types = set(data["resources"])
        self.tables = {name: _Table(name, name in resource_types) for name in data["types"]}
        self.resources = {name: self.tables[name] for name in data["resources"]}
        value_sets = data["valueSets"]
        codes = {url: frozenset(c for codes in systems.values() for c in codes) for url, systems in value_sets.items()}
        codings = {
            url: frozenset((system, c) for system, codes in systems.items() for c in codes)
            for url, systems in value_sets.items()
        }
        self.not_enumerated: dict[str, str] = data["notEnumerated"]
        for name, entries in data["types"].items():
            self._compile(self.tables[name], entries, codes, codings)

    def _compile(
        self,
        table: _Table,
        entries: list[dict[str, Any]],
        codes: dict[str, frozenset[str]],
        codings: dict[str, frozenset[tuple[str, str]]],
    ) -> None:
        required = []
        for entry in entries:
            if entry["max"] == "0":
                continue
            name: str = entry["name"]
            many = entry["max"] != "1"
            maximum = None if entry["max"] == "*" else int(entry["max"])
            choice = name[:-3] if name.endswith("[x]") else None
            keys = []
            for type_name in entry["types"]:
                key = choice + type_name[0].upper() + type_name[1:] if choice else name
                primitive = self.primitives.get(type_name)
                if primitive is not None:
                    element = _Element(key, PRIMITIVE, many, maximum)
                    element.primitive = primitive
                    element.local = type_name in ("uri", "url", "canonical")
                elif type_name == "Resource":
                    element = _Element(key, RESOURCE, many, maximum)
                else:
                    element = _Element(key, COMPLEX, many, maximum)
                    element.table = self.tables[type_name]
                element.choice = choice
                binding = entry.get("binding")
                if binding:
                    element.binding = binding
                    if type_name == "code" and binding in codes:
                        element.codes = codes[binding]
                    elif type_name in ("Coding", "CodeableConcept") and binding in codings:
                        element.codings = codings[binding]
                if primitive is not None:
                    element.fast = _fast_check(primitive, element)
                if type_name == "Reference" and "targets" in entry:
                    element.targets = frozenset(entry["targets"])
                table.elements[key] = element
                keys.append(key)
                if primitive is not None and primitive.extensible and not entry.get("plain"):
                    extension = _Element("_" + key, PRIMITIVE_EXTENSION, many, maximum)
                    extension.primitive = primitive
                    extension.table = self.tables["Element"]
                    extension.choice = choice
                    table.elements[extension.key] = extension
                    keys.append(extension.key)
            if entry["min"] > 0:
                required.append((name, tuple(keys)))
        table.required = tuple(required)

    # entry points ---------------------------------------------------------------------------------
    def validate(self, resource: Any, root: str | None = None, *, strict: bool = False) -> list[Issue]:
        """Every issue of ``resource`` (errors, then warnings; at most MAX_ISSUES), located from ``root``
        (default: the resource type). ``strict`` turns warnings into errors."""
        run = _Run(strict)
        if not isinstance(resource, dict):
            run.error("structure", root or "", "a resource is a JSON object")
            return run.issues
        self._resource(run, resource, root or str(resource.get("resourceType", "")), contained=False)
        if run.issues:
            run.issues.sort(key=lambda issue: issue.severity != "error")
        return run.issues

    # the walk ---------------------------------------------------------------------------------------
    def _resource(self, run: _Run, resource: dict[str, Any], path: str, contained: bool) -> None:
        resource_type = resource.get("resourceType")
        table = self.resources.get(resource_type) if isinstance(resource_type, str) else None
        if table is None:
            if resource_type is None:
                run.error("required", path, "a resource needs a resourceType")
            else:
                run.error("structure", path, f"{resource_type!r} is not an R4 resource type")
            return
        if contained:
            self._object(run, resource, table, path)
            self._contained_rules(run, resource, path)
            return
        outer, run.frame = run.frame, _Frame()
        self._object(run, resource, table, path)
        frame, run.frame = run.frame, outer
        if frame.contained or frame.references:
            _check_local_references(run, frame, path)

    def _contained_rules(self, run: _Run, resource: dict[str, Any], path: str) -> None:
        if "contained" in resource:
            run.error("invariant", f"{path}.contained", "a contained resource cannot contain resources (dom-2)")
        meta = resource.get("meta")
        if isinstance(meta, dict):
            if "versionId" in meta or "lastUpdated" in meta:
                run.error(
                    "invariant",
                    f"{path}.meta",
                    "a contained resource has no meta.versionId or meta.lastUpdated (dom-4)",
                )
            if "security" in meta:
                run.error("invariant", f"{path}.meta.security", "a contained resource has no security labels (dom-5)")
        resource_id = resource.get("id")
        if not isinstance(resource_id, str):
            run.error("required", f"{path}.id", "a contained resource needs an id, for references to it")
        else:
            run.frame.contained.append((resource_id, path))

    def _object(self, run: _Run, obj: dict[str, Any], table: _Table, path: str) -> None:
        if not obj:
            run.error("structure", path, "an object must not be empty (json.html, ele-1)")
            return
        elements = table.elements
        choices: dict[str, str] | None = None
        for key, value in obj.items():
            element = elements.get(key)
            if element is None:
                if key == "resourceType" and table.resource:
                    continue
                self._unknown(run, table, key, path)
                continue
            if element.choice is not None:
                if choices is None:
                    choices = {element.choice: element.variant}
                elif choices.setdefault(element.choice, element.variant) != element.variant:
                    run.error(
                        "structure",
                        f"{path}.{key}",
                        f"{element.choice}[x] has one type only: {choices[element.choice]} and {element.variant} "
                        "are both given",
                    )
            kind = element.kind
            if kind == PRIMITIVE and not element.many and value is not None:
                # the common case: a valid string is accepted at once; any other value gets the full check
                fast = element.fast
                if fast is None or type(value) is not str or not fast(value):
                    self._primitive(run, element, value, path, key)
                continue
            where = f"{path}.{key}"
            if element.many:
                if type(value) is not list:
                    run.error("structure", where, f"{key} repeats: it is a JSON array")
                    continue
                if not value:
                    run.error("structure", where, "an array must not be empty (json.html)")
                    continue
                if element.max is not None and len(value) > element.max:
                    run.error("structure", where, f"{key} has at most {element.max} values, not {len(value)}")
                if kind in (PRIMITIVE, PRIMITIVE_EXTENSION):
                    self._primitive_array(run, obj, element, value, where)
                elif kind == COMPLEX:
                    sub = element.table
                    for index, item in enumerate(value):
                        self._complex(run, element, sub, item, f"{where}[{index}]")  # type: ignore[arg-type]
                else:
                    for index, item in enumerate(value):
                        self._nested_resource(run, element, item, f"{where}[{index}]")
            elif type(value) is list:
                run.error("structure", where, f"{key} does not repeat: it is not a JSON array")
            elif kind == PRIMITIVE:
                run.error("structure", where, "null is not a value (json.html)")
            elif kind == COMPLEX:
                self._complex(run, element, element.table, value, where)  # type: ignore[arg-type]
            elif kind == PRIMITIVE_EXTENSION:
                self._primitive_extension(run, value, where)
            else:
                self._nested_resource(run, element, value, where)
        for name, keys in table.required:
            for key in keys:
                if key in obj:
                    break
            else:
                run.error("required", f"{path}.{name}", f"{name} is required (min 1) in {table.name}")
        if table.check == EXTENSION:
            values = sum(1 for key in obj if key.startswith(("value", "_value")) and key in elements)
            if ("extension" in obj) == bool(values):
                run.error("invariant", path, "an extension has either a value[x] or extensions, not both (ext-1)")

    def _unknown(self, run: _Run, table: _Table, key: str, path: str) -> None:
        choice = max(
            (e.choice for e in table.elements.values() if e.choice and key.startswith(e.choice)), key=len, default=""
        )
        if choice and key[len(choice) : len(choice) + 1].isupper():
            allowed = ", ".join(e.key for e in table.elements.values() if e.choice == choice and e.key[0] != "_")
            message = f"{key} is not a type of {choice}[x] here (one of: {allowed})"
        else:
            message = f"unknown element {key!r}: {table.name} has no such element in FHIR R4"
        run.error("structure", f"{path}.{key}", message)

    def _complex(self, run: _Run, element: _Element, table: _Table, value: Any, path: str) -> None:
        if type(value) is not dict:
            what = "null" if value is None else type(value).__name__
            run.error("structure", path, f"a {table.name} is a JSON object, not {what}")
            return
        self._object(run, value, table, path)
        if element.codings is not None:
            self._required_coding(run, element, value, path)
        if table.check == REFERENCE:
            self._reference(run, element, value, path)

    def _nested_resource(self, run: _Run, element: _Element, value: Any, path: str) -> None:
        if type(value) is not dict:
            run.error("structure", path, "a resource is a JSON object")
            return
        self._resource(run, value, path, contained=element.key == "contained")

    def _primitive(self, run: _Run, element: _Element, value: Any, path: str, key: str | int) -> None:
        """Check one primitive value; its location (``path.key`` or ``path[key]``) is built only for a problem."""
        primitive: _Primitive = element.primitive  # type: ignore[assignment]
        kind = primitive.json
        if kind == STRING:
            if type(value) is str and value:
                control = _CONTROL.search(value)
                if control is not None and "\x00" in value:
                    problem = ("invalid", "FHIR strings cannot hold the character U+0000 (NUL)")
                elif primitive.fullmatch is not None and primitive.fullmatch(value) is None:
                    problem = ("value", f"{_shorten(value)!r} is not a valid {primitive.name}")
                elif primitive.max_length is not None and len(value) > primitive.max_length:
                    problem = ("value", f"a {primitive.name} has at most {primitive.max_length} characters")
                elif primitive.is_xhtml and _XHTML_DIV.match(value) is None:
                    problem = ("value", 'the narrative is an XHTML <div xmlns="http://www.w3.org/1999/xhtml">')
                elif element.codes is not None and value not in element.codes:
                    problem = ("code-invalid", _not_in_value_set(repr(value), element))
                else:
                    if control is not None:
                        run.warning(
                            "value", _at(path, key), "a string should hold no control character but tab, CR, LF"
                        )
                    if element.local and value[0] == "#":
                        run.frame.pointers.append(value)
                    return
            elif type(value) is str:
                problem = ("value", "a string must not be empty (json.html)")
            else:
                problem = ("structure", f"a {primitive.name} is {_JSON_NAMES[kind]}, not {_json_name(value)}")
        elif kind == BOOLEAN:
            if type(value) is bool:
                return
            problem = ("structure", f"a boolean is {_JSON_NAMES[kind]}, not {_json_name(value)}")
        elif kind == INTEGER:
            if type(value) is not int:
                problem = ("structure", f"a {primitive.name} is {_JSON_NAMES[kind]}, not {_json_name(value)}")
            elif 0 < value <= primitive.maximum:  # type: ignore[operator]
                return
            elif not (primitive.minimum <= value <= primitive.maximum):  # type: ignore[operator]
                problem = ("value", f"{value} is out of the range of a {primitive.name} (32-bit)")
            elif primitive.fullmatch is not None and primitive.fullmatch(str(value)) is None:
                problem = ("value", f"{value} is not a valid {primitive.name}")
            else:
                return
        elif type(value) is int or type(value) is float:
            return
        else:
            problem = ("structure", f"a decimal is {_JSON_NAMES[kind]}, not {_json_name(value)}")
        run.error(problem[0], _at(path, key), problem[1])

    def _primitive_array(self, run: _Run, obj: dict[str, Any], element: _Element, values: list[Any], path: str) -> None:
        """A primitive array and its ``_name`` array align; ``null`` only where the other one has a value."""
        extension = element.kind == PRIMITIVE_EXTENSION
        other = obj.get(element.variant if extension else "_" + element.key)
        if other is not None and (type(other) is not list or len(other) != len(values)):
            if not extension:
                run.error("structure", path, f"{element.key} and _{element.key} are arrays of the same length")
            other = None
        for index, item in enumerate(values):
            where = f"{path}[{index}]"
            if item is None:
                if other is None or other[index] is None:
                    run.error(
                        "structure", where, "null is only allowed to align a value with its extensions (json.html)"
                    )
            elif extension:
                self._primitive_extension(run, item, where)
            else:
                self._primitive(run, element, item, path, index)

    def _primitive_extension(self, run: _Run, value: Any, path: str) -> None:
        if type(value) is not dict:
            run.error("structure", path, f"a primitive's id and extensions are a JSON object, not {_json_name(value)}")
            return
        self._object(run, value, self.tables["Element"], path)

    def _required_coding(self, run: _Run, element: _Element, value: dict[str, Any], path: str) -> None:
        codings = element.codings
        assert codings is not None
        if "coding" in value:  # a CodeableConcept: one of its codings from the value set
            found = [c for c in value["coding"] if isinstance(c, dict)] if isinstance(value["coding"], list) else []
            if any((c.get("system"), c.get("code")) in codings for c in found):
                return
            shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in found) or "none"
            run.error("code-invalid", f"{path}.coding", _not_in_value_set(f"no coding ({shown})", element))
        elif "code" in value or "system" in value:  # a Coding
            if (value.get("system"), value.get("code")) not in codings:
                shown = f"{value.get('system')}|{value.get('code')}"
                run.error("code-invalid", path, _not_in_value_set(shown, element))
        else:
            run.error("code-invalid", path, _not_in_value_set("no code", element))

    def _reference(self, run: _Run, element: _Element, value: dict[str, Any], path: str) -> None:
        reference = value.get("reference")
        if type(reference) is not str or not reference:
            return
        if reference[0] == "#":
            if reference != "#" and re.fullmatch(_ID, reference[1:]) is None:
                run.error("value", f"{path}.reference", f"{reference!r} is not a reference to a contained resource")
            run.frame.references.append((reference, f"{path}.reference"))
            return
        match = _RELATIVE.fullmatch(reference) or _CONDITIONAL.fullmatch(reference)
        if match is None:
            if _ABSOLUTE.fullmatch(reference) is None:
                run.error(
                    "value",
                    f"{path}.reference",
                    f"{_shorten(reference)!r} is not a reference: Type/id, Type?criteria, #id or an absolute URI",
                )
            return
        resource_type = match.group(1)
        if resource_type not in self.resources:
            if reference.startswith(("http:", "https:")):
                return  # a URL that merely looks like Type/id, e.g. of a non-FHIR server
            run.error("value", f"{path}.reference", f"{resource_type!r} in {reference!r} is not an R4 resource type")
        elif element.targets is not None and resource_type not in element.targets:
            allowed = " | ".join(sorted(element.targets))
            run.error(
                "value",
                f"{path}.reference",
                f"{element.key} refers to {allowed}, not to a {resource_type} ({reference!r})",
            )


def _check_local_references(run: _Run, frame: _Frame, path: str) -> None:
    """ref-1: a ``#id`` reference resolves to a contained resource; dom-3: each contained resource is
    referenced from the resource (or a contained resource refers to its container with ``#``)."""
    ids = {resource_id for resource_id, _ in frame.contained}
    for reference, where in frame.references:
        if reference != "#" and reference[1:] not in ids:
            run.error("invariant", where, f"{reference!r} refers to no contained resource of {path} (ref-1)")
    referenced = {reference for reference, _ in frame.references} | set(frame.pointers)
    if "#" in referenced:
        return
    for resource_id, where in frame.contained:
        if "#" + resource_id not in referenced:
            run.error("invariant", where, f"the contained resource {resource_id!r} is referenced nowhere (dom-3)")


def _fast_check(primitive: _Primitive, element: _Element) -> Callable[[str], Any] | None:
    """One compiled check equivalent to ``_primitive``'s acceptance of a string value (None: no shortcut)."""
    if primitive.json != STRING or primitive.is_xhtml:
        return None
    if element.codes is not None:
        return element.codes.__contains__  # the value sets' codes are valid codes
    length = f"{{1,{primitive.max_length}}}" if primitive.max_length else "+"
    no_pointer = "(?!#)" if element.local else ""  # "#..." values are noted for dom-3 by the full check
    regex = primitive.fullmatch.__self__.pattern if primitive.fullmatch else r"[\s\S]+"  # type: ignore[attr-defined]
    return re.compile(rf"(?=[^\x00-\x08\x0b\x0c\x0e-\x1f]{length}\Z){no_pointer}(?:{regex})", re.ASCII).fullmatch


def _at(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if type(key) is int else f"{path}.{key}"


def _not_in_value_set(what: str, element: _Element) -> str:
    codes = element.codes if element.codes is not None else {c for _, c in element.codings or ()}
    listed = " | ".join(sorted(codes)) if len(codes) <= 12 else f"{len(codes)} codes"
    return f"{what} is not in the required value set {element.binding} ({listed})"


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


def _shorten(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


@cache
def validator() -> Validator:
    """The R4 4.0.1 validator, compiled on first use."""
    raw = resources.files("fhir_bridge.spec").joinpath("data", "structure.json.gz").read_bytes()
    return Validator(json.loads(gzip.decompress(raw)))
