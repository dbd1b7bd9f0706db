"""The FHIR R4 definitions the server runs on: resource types, search parameters, compartments.

Everything here is loaded from the specification's own data in ``spec/data`` (see SOURCE.md);
no search parameter is written by hand. Each SearchParameter's shared expression is split per
base resource type and compiled once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from fhir_bridge.spec.fhirpath import Evaluator, FhirPathError, compile_expression, split_union

FHIR_VERSION = "4.0.1"
INDEXED_TYPES = frozenset({"token", "string", "date", "reference", "uri", "number", "quantity", "composite"})
# The second component types a composite index row can hold (its first is always a token).
COMPOSITE_SECOND_TYPES = frozenset({"token", "string", "reference", "quantity", "date"})
# Parameters answered from columns of the resource row rather than from index tables.
ROW_PARAMETERS = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True)
class SearchParameter:
    """One search parameter as it applies to one resource type."""

    code: str
    type: str
    resource_type: str
    expression: str
    url: str
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    evaluate: Evaluator | None = field(default=None, compare=False, repr=False)
    # composite parameters: (type, expression relative to the composite's element) per component
    components: tuple[tuple[str, Evaluator], ...] = field(default=(), compare=False, repr=False)

    @property
    def single_valued(self) -> bool:
        """True when a resource holds at most one value for it (its element has max 1)."""
        match = _SIMPLE_PATH.match(self.expression)
        if not match or match.group(1) != self.resource_type:
            return False
        return match.group(2) in element_groups(self.resource_type).get("single", [])

    @property
    def identifying(self) -> bool:
        """True for identifiers and UIDs: a value names one or a few resources (for the planner)."""
        return self.expression.rstrip(")").split(".")[-1] in ("identifier", "uid", "id")

    @property
    def indexed(self) -> bool:
        if self.type == "composite" and not self.components:
            return False
        return self.evaluate is not None and self.type in INDEXED_TYPES and self.code not in ROW_PARAMETERS


def _load(name: str) -> Any:
    return json.loads(resources.files("fhir_bridge.spec").joinpath("data", name).read_text(encoding="utf-8"))


@cache
def _definitions() -> list[dict[str, Any]]:
    """The spec's SearchParameters, then fhir-bridge's few additions (local-search-parameters.json)."""
    return _load("search-parameters.json") + _load("local-search-parameters.json")


@cache
def resource_types() -> frozenset[str]:
    """All concrete R4 resource types."""
    return frozenset(_load("resource-types.json"))


_ROOT = re.compile(r"^\(*\s*([A-Za-z]+)")
_SIMPLE_PATH = re.compile(r"^\(?([A-Za-z]+)\.([a-zA-Z]+)(?:\s+as\s+\w+|\.as\(\w+\))?\)?$")


def _parts_for(expression: str, base: str) -> list[str]:
    """The union parts of a shared expression that apply to ``base``."""
    wanted = {base, "Resource", "DomainResource"}
    parts = []
    for part in split_union(expression):
        root = _ROOT.match(part)
        if root and root.group(1) in wanted:
            parts.append(part)
    return parts


@cache
def search_parameters(resource_type: str) -> dict[str, SearchParameter]:
    """Search parameters by code for ``resource_type``, including those defined on Resource."""
    types = resource_types()
    result: dict[str, SearchParameter] = {}
    for definition in _definitions():
        bases = definition["base"]
        if resource_type not in bases and "Resource" not in bases and "DomainResource" not in bases:
            continue
        expression = definition.get("expression", "")
        base = resource_type if resource_type in bases else bases[0]
        parts = _parts_for(expression, base) if expression else []
        own_expression = " | ".join(parts)
        evaluate = _compile(own_expression, types) if parts else None
        result[definition["code"]] = SearchParameter(
            code=definition["code"],
            type=definition["type"],
            resource_type=resource_type,
            expression=own_expression,
            url=definition["url"],
            targets=tuple(definition.get("target", ())),
            modifiers=tuple(definition.get("modifier", ())),
            comparators=tuple(definition.get("comparator", ())),
            evaluate=evaluate,
            components=_components(definition, types),
        )
    return result


@cache
def choice_elements() -> frozenset[str]:
    """Names of the elements defined as ``name[x]`` anywhere in R4."""
    return frozenset(_load("choice-elements.json"))


def _compile(expression: str, types: frozenset[str]) -> Evaluator | None:
    """The compiled expression, or None where it uses FHIRPath beyond the supported subset."""
    try:
        return compile_expression(expression, types, choice_elements())
    except FhirPathError:
        return None


def _components(definition: dict[str, Any], types: frozenset[str]) -> tuple[tuple[str, Evaluator], ...]:
    """A composite's components, when they fit the composite index (token, then one other)."""
    components = definition.get("component", [])
    if definition["type"] != "composite" or len(components) != 2:
        return ()
    compiled = []
    for component in components:
        target = _definitions_by_url().get(component["definition"])
        evaluate = _compile(component["expression"], types)
        if target is None or evaluate is None:
            return ()
        compiled.append((target["type"], evaluate))
    if compiled[0][0] != "token" or compiled[1][0] not in COMPOSITE_SECOND_TYPES:
        return ()
    return tuple(compiled)


@cache
def _definitions_by_url() -> dict[str, dict[str, Any]]:
    return {d["url"]: d for d in _definitions()}


@cache
def patient_compartment() -> dict[str, list[str]]:
    """For each resource type, the search parameters that link it to a Patient compartment."""
    return _load("patient-compartment.json")


@cache
def element_groups(resource_type: str) -> dict[str, list[str]]:
    """Top-level ``summary``, ``mandatory`` and ``single`` (max 1) element names (``x[x]`` for choices)."""
    groups = _load("elements.json").get(resource_type, {})
    return {
        key: [name.removesuffix("[x]") for name in groups.get(key, [])] if key == "single" else groups.get(key, [])
        for key in ("summary", "mandatory", "single")
    }
