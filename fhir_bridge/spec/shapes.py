"""The shape of an element of a resource: its type and whether it repeats, from the R4 definitions.

Loaded from ``spec/data/element-shapes.json`` (generated from the R4 4.0.1 StructureDefinitions, see
SOURCE.md): what building a value from a FHIRPath Patch needs to know, i.e. whether ``name`` is an
array in FHIR JSON and which type a nested element has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fhir_bridge.spec.registry import choice_elements


@dataclass(frozen=True)
class Shape:
    """``type_name``: the element's type (``HumanName``, ``BackboneElement``, ``string``...), None when the
    definitions leave it out (a single primitive or a choice); ``many``: an array in JSON."""

    type_name: str | None
    many: bool
    choice: bool = False  # ``name[x]``: its JSON key is the name and the type (``deceasedBoolean``)


@cache
def _shapes() -> dict[str, dict[str, str]]:
    text = resources.files("fhir_bridge.spec").joinpath("data", "element-shapes.json").read_text(encoding="utf-8")
    return json.loads(text)


def _parse(code: str) -> Shape:
    if code == "[x]":
        return Shape(None, False, choice=True)
    return Shape(code.rstrip("*"), code.endswith("*"))


def _choice_type(key: str) -> str | None:
    """The type of a choice element's JSON key (``valueQuantity`` -> ``Quantity``), else None."""
    for name in choice_elements():
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            return key[len(name) :]
    return None


def element_shape(owner: str, keys: list[str]) -> Shape:
    """The shape of the element reached from type ``owner`` (a resource or data type) through the JSON
    ``keys`` (array indexes left out): ``element_shape("Patient", ["contact", "telecom"])``."""
    if not keys:
        return Shape(owner, False)
    if keys[-1] in ("extension", "modifierExtension"):
        return Shape("Extension", True)
    table = _shapes().get(owner, {})
    path: list[str] = []
    for position, key in enumerate(keys):
        path.append(key)
        code = table.get(".".join(path))
        last = position == len(keys) - 1
        if code is None or (code == "[x]" and not last):
            choice = _choice_type(key)
            if choice is None:
                return Shape(None, False)
            if last:
                return Shape(choice, False)
            return element_shape(choice, keys[position + 1 :])
        if code.startswith("@"):  # contentReference: the definition of another element, with its own max
            many = code.endswith("*")
            path = code[1:].rstrip("*").split(".")
            code = table.get(".".join(path), "BackboneElement").rstrip("*") + ("*" if many else "")
        shape = _parse(code)
        if last:
            return shape
        if shape.type_name not in ("BackboneElement", "Element") and shape.type_name in _shapes():
            return element_shape(shape.type_name, keys[position + 1 :])
    return Shape(None, False)
