"""The shape of an element of a resource: its type and whether it repeats, from the R4 definitions.

Read from the validator's element tables (``spec/data/structure.json.gz``, one table per type and per
BackboneElement path): what building a value from a FHIRPath Patch needs to know, i.e. whether ``name``
is an array in FHIR JSON and which type a nested element has.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_bridge.spec.validator import COMPLEX, PRIMITIVE, PRIMITIVE_EXTENSION, validator


@dataclass(frozen=True)
class Shape:
    """``type_name``: the element's type (``HumanName``, ``Patient.contact`` for a BackboneElement,
    ``string``...), None for a choice named without its type or an unknown element; ``many``: an array
    in JSON; ``choice``: ``name[x]`` named without its type (its JSON key is the name and the type)."""

    type_name: str | None
    many: bool
    choice: bool = False


def element_shape(owner: str, keys: list[str]) -> Shape:
    """The shape of the element reached from type ``owner`` (a resource or data type) through the JSON
    ``keys`` (array indexes left out): ``element_shape("Patient", ["contact", "telecom"])``."""
    table = validator().tables.get(owner)
    if table is None:
        return Shape(None, False)
    if not keys:
        return Shape(owner, False)
    for position, key in enumerate(keys):
        element = table.elements.get(key)
        last = position == len(keys) - 1
        if element is None:
            named_choice = any(e.choice == key for e in table.elements.values())
            return Shape(None, False, choice=named_choice and last)
        if last:
            if element.kind in (PRIMITIVE, PRIMITIVE_EXTENSION) and element.primitive is not None:
                name = element.primitive.name if element.kind == PRIMITIVE else "Element"
                return Shape(name, element.many)
            if element.kind == COMPLEX and element.table is not None:
                return Shape(element.table.name, element.many)
            return Shape("Resource", element.many)
        if element.kind != COMPLEX or element.table is None:
            return Shape(None, False)
        table = element.table
    return Shape(None, False)
