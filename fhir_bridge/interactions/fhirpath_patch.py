"""FHIRPath Patch (R4 fhirpatch.html): a ``Parameters`` resource of ``operation``s, each of ``type``
add, insert, delete, replace or move at a FHIRPath ``path``.

Paths are evaluated by the project's FHIRPath compiler (``spec.fhirpath``) with ``located=True``, so
each element found knows its place in the resource; the same subset as the search expressions is
understood (navigation, ``[n]``, ``where(...)``, ``first()``, ``as``/``ofType``), and a path beyond it
is a 400 naming the operation. Values come as ``value[x]``, or as ``part``s for an anonymous
(BackboneElement) type; whether an element is an array comes from the R4 definitions (``spec.shapes``).

Following fhirpatch.html: every path but delete's must select exactly one element (a delete of nothing
changes nothing); ``add`` appends to an array element, or sets a single element that is absent;
``insert`` and ``move`` work on the array ``path`` selects, with 0-based indexes. A failure is a 422
naming the operation and the resource is left unchanged.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, cast

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.parameters import parameters_of, typed_value
from fhir_bridge.spec.fhirpath import Collection, Evaluator, FhirPathError, Located, compile_expression
from fhir_bridge.spec.registry import choice_elements, resource_types
from fhir_bridge.spec.shapes import element_shape

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")


@lru_cache(maxsize=256)
def _compiled(path: str) -> Evaluator:
    return compile_expression(path, resource_types(), choice_elements(), located=True)


class _Operation:
    """One ``operation`` parameter, its parts read."""

    def __init__(self, parameter: dict[str, Any], where: str) -> None:
        self.where = where
        self.parts: dict[str, dict[str, Any]] = {}
        for part in parameter.get("part", []) if isinstance(parameter.get("part"), list) else []:
            if isinstance(part, dict) and isinstance(part.get("name"), str):
                self.parts[part["name"]] = part
        self.type = self.value_of("type", str)
        if self.type not in OPERATION_TYPES:
            raise self.invalid(f"type must be one of {', '.join(OPERATION_TYPES)}, not {self.type!r}")
        self.path = self.value_of("path", str)

    def invalid(self, message: str, status: int = 400) -> FhirError:
        code = "invalid" if status == 400 else "processing"
        return FhirError(status, f"FHIRPath Patch {self.where}: {message}", code=code, expression=self.where)

    def value_of(self, name: str, kind: type) -> Any:
        part = self.parts.get(name)
        value = typed_value(part)[1] if part else None
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.invalid(f"needs a {name} part ({'an integer' if kind is int else 'a ' + kind.__name__})")
        return value


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """``resource`` with the FHIRPath Patch ``parameters`` applied (a copy; ``resource`` is unchanged)."""
    patched = copy.deepcopy(resource)
    for index, parameter in enumerate(parameters_of(parameters, "a FHIRPath Patch")):
        where = f"Parameters.parameter[{index}]"
        if parameter["name"] != "operation":
            raise FhirError(
                400, f"FHIRPath Patch {where}: every parameter is an 'operation'", code="invalid", expression=where
            )
        _APPLY[(operation := _Operation(parameter, where)).type](patched, operation)
    return patched


# evaluation -------------------------------------------------------------------------------------
def _select(resource: dict[str, Any], operation: _Operation, path: str | None = None) -> list[Located]:
    path = path or operation.path
    root = path.split(".", 1)[0].split("[", 1)[0].strip()
    if root != resource["resourceType"]:
        raise operation.invalid(f"the path {path!r} must start with {resource['resourceType']}")
    try:
        evaluate = _compiled(path)
    except FhirPathError as error:
        raise operation.invalid(f"the path is beyond the FHIRPath this server evaluates: {error}") from None
    found = evaluate(cast(Collection, [Located(resource)]))
    if any(not isinstance(item, Located) or item.parent is None for item in found) and path != root:
        raise operation.invalid(f"the path {path!r} selects values that are not elements of the resource")
    return found  # type: ignore[return-value]


def _one(resource: dict[str, Any], operation: _Operation, path: str | None = None) -> Located:
    found = _select(resource, operation, path)
    if len(found) != 1:
        raise operation.invalid(f"the path {path or operation.path!r} selects {len(found)} elements, not one", 422)
    return found[0]


def _owner_of(root: dict[str, Any], target: Any) -> tuple[str, list[str]]:
    """The type and JSON keys (no indexes) that lead from the resource, or its nearest enclosing
    contained resource, to ``target``."""

    def search(node: Any, owner: str, keys: list[str]) -> tuple[str, list[str]] | None:
        if node is target:
            return owner, keys
        if not isinstance(node, dict):
            return None
        for key, value in node.items():
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, dict):
                    inner = (child["resourceType"], []) if "resourceType" in child else (owner, [*keys, key])
                    if (found := search(child, *inner)) is not None:
                        return found
        return None

    return search(root, root["resourceType"], []) or (root["resourceType"], [])


def _value(part: dict[str, Any], owner: str, keys: list[str], operation: _Operation) -> tuple[str | None, Any]:
    """The value a ``value`` part gives: ``value[x]``, or an object built from its ``part``s."""
    value_type, value = typed_value(part)
    if value_type is not None:
        return value_type, value
    parts = part.get("part")
    if not isinstance(parts, list) or not parts:
        raise operation.invalid("needs a value part (value[x], or parts for an anonymous type)")
    built: dict[str, Any] = {}
    for child in parts:
        name = child.get("name") if isinstance(child, dict) else None
        if not isinstance(name, str):
            raise operation.invalid("every part of a value needs a name")
        child_type, child_value = _value(child, owner, [*keys, name], operation)
        key = _json_key(owner, keys, name, child_type)
        if element_shape(owner, [*keys, key]).many:
            built.setdefault(key, []).append(child_value)
        elif key in built:
            raise operation.invalid(f"the value's part {name!r} repeats, but {name} is a single element")
        else:
            built[key] = child_value
    return None, built


def _json_key(owner: str, keys: list[str], name: str, value_type: str | None) -> str:
    """The JSON key of element ``name``: a choice (``deceased[x]``) takes its value's type (``deceasedBoolean``)."""
    if value_type and value_type != "Resource" and element_shape(owner, [*keys, name]).choice:
        return name + value_type
    return name


def _array_of(resource: dict[str, Any], operation: _Operation) -> tuple[dict[str, Any], str]:
    """The object and key of the array an insert or move works on: what ``path`` selects (or, when it
    selects nothing, the absent array named by the path's last step)."""
    found = _select(resource, operation)
    places = {(id(item.parent), item.key) for item in found}
    if found:
        item = found[0]
        if len(places) != 1 or item.position is None or item.parent is None or item.key is None:
            raise operation.invalid(f"the path {operation.path!r} does not select the items of one array", 422)
        return item.parent, item.key
    head, dot, name = operation.path.rpartition(".")
    if not dot or not name.isidentifier():
        raise operation.invalid(f"the path {operation.path!r} selects nothing", 422)
    container = _one(resource, operation, head)
    if not isinstance(container.value, dict):
        raise operation.invalid(f"{head!r} is not an element that can hold {name!r}", 422)
    return container.value, name


# operations ---------------------------------------------------------------------------------------
def _add(resource: dict[str, Any], operation: _Operation) -> None:
    container = _one(resource, operation).value
    if not isinstance(container, dict):
        raise operation.invalid(f"the path {operation.path!r} selects a primitive value, which holds no elements", 422)
    name = operation.value_of("name", str)
    owner, keys = _owner_of(resource, container)
    value_part = operation.parts.get("value")
    if value_part is None:
        raise operation.invalid("an add needs a value part")
    value_type, value = _value(value_part, owner, [*keys, name], operation)
    key = _json_key(owner, keys, name, value_type)
    if element_shape(owner, [*keys, key]).many:
        existing = container.setdefault(key, [])
        if not isinstance(existing, list):
            raise operation.invalid(f"{key} is not an array", 422)
        existing.append(value)
    elif key in container:
        raise operation.invalid(f"{key} exists already and is a single element: use replace", 422)
    else:
        container[key] = value


def _insert(resource: dict[str, Any], operation: _Operation) -> None:
    parent, key = _array_of(resource, operation)
    index = operation.value_of("index", int)
    array = parent.get(key, [])
    if not isinstance(array, list) or not 0 <= index <= len(array):
        raise operation.invalid(f"index {index} is outside 0..{len(array) if isinstance(array, list) else 0}", 422)
    owner, keys = _owner_of(resource, parent)
    value_part = operation.parts.get("value")
    if value_part is None:
        raise operation.invalid("an insert needs a value part")
    array.insert(index, _value(value_part, owner, [*keys, key], operation)[1])
    parent[key] = array


def _delete(resource: dict[str, Any], operation: _Operation) -> None:
    found = _select(resource, operation)
    if not found:
        return  # fhirpatch.html: the element is deleted if found
    if len(found) > 1:
        raise operation.invalid(f"the path {operation.path!r} selects {len(found)} elements: one can be deleted", 422)
    _remove(found[0], operation)


def _remove(item: Located, operation: _Operation) -> None:
    parent, key = item.parent, item.key
    if parent is None or key is None:
        raise operation.invalid("the resource itself cannot be deleted by a patch", 422)
    extension = parent.get(f"_{key}")  # a primitive's id and extensions (json.html#primitive) go with it
    if item.position is None:
        del parent[key]
        parent.pop(f"_{key}", None)
        return
    del parent[key][item.position]
    if isinstance(extension, list) and item.position < len(extension):
        del extension[item.position]


def _replace(resource: dict[str, Any], operation: _Operation) -> None:
    item = _one(resource, operation)
    if item.parent is None or item.key is None:
        raise operation.invalid("the resource itself cannot be replaced by a patch", 422)
    owner, keys = _owner_of(resource, item.parent)
    value_part = operation.parts.get("value")
    if value_part is None:
        raise operation.invalid("a replace needs a value part")
    value_type, value = _value(value_part, owner, [*keys, item.key], operation)
    if item.type_name is not None and value_type and value_type != item.type_name:  # value[x]: another type
        if item.position is not None:
            raise operation.invalid("a repeating choice element cannot change its type", 422)
        choice = item.key[: -len(item.type_name)]
        del item.parent[item.key]
        item.parent[choice + value_type] = value
    elif item.position is None:
        item.parent[item.key] = value
    else:
        item.parent[item.key][item.position] = value


def _move(resource: dict[str, Any], operation: _Operation) -> None:
    parent, key = _array_of(resource, operation)
    array = parent.get(key, [])
    source, destination = operation.value_of("source", int), operation.value_of("destination", int)
    if not (0 <= source < len(array) and 0 <= destination < len(array)):
        raise operation.invalid(
            f"source {source} and destination {destination} must be within 0..{len(array) - 1}", 422
        )
    array.insert(destination, array.pop(source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
