"""Reading a ``Parameters`` resource (operation bodies, FHIRPath Patch): named parts and their values."""

from __future__ import annotations

from typing import Any

from fhir_bridge.errors import FhirError


def parameters_of(body: Any, what: str) -> list[dict[str, Any]]:
    """The ``parameter`` array of a Parameters resource (400 naming ``what`` when ``body`` is none)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, f"{what} takes a Parameters resource", code="invalid", expression="resourceType")
    found = body.get("parameter", [])
    if not isinstance(found, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in found):
        raise FhirError(
            400, "Parameters.parameter must be an array of named parameters", code="structure", expression="parameter"
        )
    return found


def typed_value(parameter: dict[str, Any]) -> tuple[str | None, Any]:
    """A parameter's ``value[x]`` as (type, value): ``valueCode: "x"`` is ``("Code", "x")``; its
    ``resource`` is ``("Resource", {...})``; (None, None) when it has neither (it may have ``part``)."""
    for key, value in parameter.items():
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return key[5:], value
    if "resource" in parameter:
        return "Resource", parameter["resource"]
    return None, None


def single_values(parameters: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """Name -> value of parameters that each appear once with a ``value[x]`` or ``resource``."""
    values: dict[str, Any] = {}
    for index, parameter in enumerate(parameters):
        name = parameter["name"]
        if name in values:
            raise FhirError(
                400, f"the parameter {name!r} is given twice", code="invalid", expression=f"{where}[{index}]"
            )
        values[name] = typed_value(parameter)[1]
    return values
