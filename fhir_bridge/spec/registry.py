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

from fhir_bridge.spec.fhirpath import Evaluator, compile_expression, split_union

FHIR_VERSION = "4.0.1"
INDEXED_TYPES = frozenset({"token", "string", "date", "reference", "uri", "number", "quantity"})
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

    @property
    def indexed(self) -> bool:
        return self.evaluate is not None and self.type in INDEXED_TYPES and self.code not in ROW_PARAMETERS


def _load(name: str) -> Any:
    return json.loads(resources.files("fhir_bridge.spec").joinpath("data", name).read_text(encoding="utf-8"))


@cache
def _definitions() -> list[dict[str, Any]]:
    return _load("search-parameters.json")


@cache
def resource_types() -> frozenset[str]:
    """All concrete R4 resource types."""
    return frozenset(_load("resource-types.json"))


_ROOT = re.compile(r"^\(*\s*([A-Za-z]+)")


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
        evaluate = compile_expression(own_expression, types) if parts else None
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
        )
    return result


@cache
def patient_compartment() -> dict[str, list[str]]:
    """For each resource type, the search parameters that link it to a Patient compartment."""
    return _load("patient-compartment.json")
