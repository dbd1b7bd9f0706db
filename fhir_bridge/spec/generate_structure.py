"""Derive the validator's data (``spec/data/structure.json.gz``) from the R4 4.0.1 definitions.

Called by ``generate.py``. From the StructureDefinition snapshots of every concrete resource type and
every data type it keeps, per element: name, cardinality, types (choice types, contentReference and
BackboneElement children as named element tables), Reference targets and required bindings; per
primitive type: its JSON representation, regex and bounds. Each required binding's value set is
enumerated from the expansions package where its composition is closed (explicit concept lists, or
CodeSystems the package defines completely); the others are listed with the reason, and accepted.
"""

from __future__ import annotations

from typing import Any

SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXTENSION = "http://hl7.org/fhir/StructureDefinition/regex"
PROFILE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
# JSON representation of the primitive types (json.html): by the root of their base chain
JSON_KINDS = {"boolean": "boolean", "integer": "integer", "decimal": "decimal"}
BOUNDS = (("minValue", "minValueInteger"), ("maxValue", "maxValueInteger"), ("maxLength", "maxLength"))


def derive_structure(
    definitions: list[dict[str, Any]],
    value_sets: list[dict[str, Any]],
    code_systems: list[dict[str, Any]],
    expansions: list[dict[str, Any]],
) -> dict[str, Any]:
    """The validator's data: ``primitives``, ``types``, ``resources``, ``valueSets``, ``notEnumerated``."""
    by_type = {d["type"]: d for d in definitions if d.get("derivation") == "specialization" or d["type"] == "Element"}
    primitives = {d["type"]: _primitive(d, by_type) for d in by_type.values() if d["kind"] == "primitive-type"}
    resources = sorted(d["type"] for d in by_type.values() if d["kind"] == "resource" and not d.get("abstract"))
    complex_types = sorted(
        d["type"]
        for d in by_type.values()
        if d["kind"] == "complex-type" and (not d.get("abstract") or d["type"] == "Element")
    )
    types: dict[str, list[dict[str, Any]]] = {}
    for name in resources + complex_types:
        types.update(_element_tables(by_type[name]))
    bound = sorted({e["binding"] for table in types.values() for e in table if "binding" in e})
    enumerated, not_enumerated = _value_sets(bound, value_sets, code_systems, expansions)
    return {
        "fhirVersion": "4.0.1",
        "primitives": primitives,
        "resources": resources,
        "types": types,
        "valueSets": enumerated,
        "notEnumerated": not_enumerated,
    }


def _primitive(definition: dict[str, Any], by_type: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """JSON kind, regex and bounds of a primitive type; bounds and kind are inherited along its base chain."""
    chain = [definition]
    while (base := chain[-1].get("baseDefinition", "").removeprefix(PROFILE_PREFIX)) in by_type and by_type[base][
        "kind"
    ] == "primitive-type":
        chain.append(by_type[base])
    result: dict[str, Any] = {"json": JSON_KINDS.get(chain[-1]["type"], "string")}
    elements = {e["path"].split(".", 1)[-1]: e for e in definition["snapshot"]["element"]}
    value = elements["value"]
    regex = [
        x["valueString"] for t in value.get("type", []) for x in t.get("extension", []) if x["url"] == REGEX_EXTENSION
    ]
    if regex:
        result["regex"] = regex[0]
    for link in chain:
        link_value = next(e for e in link["snapshot"]["element"] if e["path"].endswith(".value"))
        for key, field in (
            ("minValue", "minValueInteger"),
            ("maxValue", "maxValueInteger"),
            ("maxLength", "maxLength"),
        ):
            if field in link_value:
                result.setdefault(key, link_value[field])
    # xhtml allows no extensions (its ``extension`` has max 0), hence no ``_div`` in JSON
    result["extensible"] = elements["extension"].get("max") != "0"
    return result


def _element_tables(definition: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The type's table and one per BackboneElement (named by its path, e.g. ``Patient.contact``)."""
    snapshot = definition["snapshot"]["element"]
    parents = {e["path"].rsplit(".", 1)[0] for e in snapshot if "." in e["path"]}
    tables: dict[str, list[dict[str, Any]]] = {definition["type"]: []}
    for element in snapshot[1:]:
        path = element["path"]
        parent, name = path.rsplit(".", 1)
        entry: dict[str, Any] = {"name": name, "min": element["min"], "max": element["max"]}
        if "contentReference" in element:
            entry["types"] = [element["contentReference"].split("#", 1)[1]]
        elif path in parents:
            entry["types"] = [path]
            tables[path] = []
        else:
            entry["types"] = [_type_code(t, element) for t in element["type"]]
            if _plain(element):
                entry["plain"] = True
        targets = sorted(
            {
                profile.removeprefix(PROFILE_PREFIX)
                for t in element.get("type", [])
                if t["code"] == "Reference"
                for profile in t.get("targetProfile", [])
            }
        )
        if targets and "Resource" not in targets:
            entry["targets"] = targets
        binding = element.get("binding", {})
        if binding.get("strength") == "required" and "valueSet" in binding:
            entry["binding"] = binding["valueSet"].split("|")[0]
        tables[parent].append(entry)
    return tables


def _type_code(type_: dict[str, Any], element: dict[str, Any]) -> str:
    """The FHIR type of an element: FHIRPath system types (``id``, ``Element.id``, ``Extension.url``) carry it
    in the structuredefinition-fhir-type extension; ``Resource.id`` is an ``id``."""
    code = type_["code"]
    if not code.startswith(SYSTEM_PREFIX):
        return code
    if element.get("base", {}).get("path") == "Resource.id":
        return "id"
    return next(x["valueUrl"] for x in type_.get("extension", []) if x["url"] == FHIR_TYPE_EXTENSION)


def _plain(element: dict[str, Any]) -> bool:
    """``Element.id`` and ``Extension.url`` are plain JSON properties: no ``_name`` primitive extension."""
    return element.get("base", {}).get("path") in ("Element.id", "Extension.url")


def _value_sets(
    urls: list[str],
    value_sets: list[dict[str, Any]],
    code_systems: list[dict[str, Any]],
    expansions: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    by_url = {v["url"]: v for v in value_sets}
    systems = {c["url"]: c for c in code_systems}
    expanded = {v["url"]: v for v in expansions}
    enumerated: dict[str, dict[str, list[str]]] = {}
    not_enumerated: dict[str, str] = {}
    for url in urls:
        reason = _not_enumerable(url, by_url, systems, set())
        if reason is None and url not in expanded:
            reason = "the expansions package has no expansion of it"
        if reason is not None:
            not_enumerated[url] = reason
            continue
        codes: dict[str, list[str]] = {}
        _collect(expanded[url]["expansion"].get("contains", []), codes)
        enumerated[url] = {system: sorted(set(c)) for system, c in sorted(codes.items())}
    return enumerated, not_enumerated


def _not_enumerable(
    url: str, by_url: dict[str, dict[str, Any]], systems: dict[str, dict[str, Any]], seen: set[str]
) -> str | None:
    """Why a value set cannot be enumerated from the package, or None when it can."""
    value_set = by_url.get(url)
    if value_set is None:
        return "the package does not define this value set"
    seen.add(url)
    for include in value_set.get("compose", {}).get("include", []):
        for nested in include.get("valueSet", []):
            nested = nested.split("|")[0]
            if nested not in seen and (reason := _not_enumerable(nested, by_url, systems, seen)):
                return reason
        system = include.get("system")
        if system is None or include.get("concept"):
            continue
        code_system = systems.get(system)
        if code_system is None or code_system.get("content") != "complete":
            return f"it includes codes of {system}, which the package does not define completely"
    return None


def _collect(contains: list[dict[str, Any]], codes: dict[str, list[str]]) -> None:
    for item in contains:
        if "code" in item and "system" in item:
            codes.setdefault(item["system"], []).append(item["code"])
        _collect(item.get("contains", []), codes)
