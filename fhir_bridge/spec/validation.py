"""Parse and validate incoming resources with fhir.resources' models.

The R4B models validate R4 4.0.1 content for the resource types fhir-bridge is about; the few
R4 types that R4B renamed or removed (e.g. MedicinalProduct, EffectEvidenceSynthesis) have no
model and get the structural checks only (a JSON object, a known resourceType, a valid id).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_bridge.errors import FhirError
from fhir_bridge.spec.registry import resource_types

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise FhirError(400, "the request body is empty", code="invalid")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise FhirError(400, f"the request body is not valid JSON: {error}", code="invalid") from None


def check_resource_type(name: str, expression: str = "resourceType") -> None:
    if name not in resource_types():
        raise FhirError(400, f"unknown resource type {name!r}", code="not-supported", expression=expression)


def check_id(resource_id: str, expression: str = "id") -> None:
    if not isinstance(resource_id, str) or not ID_PATTERN.match(resource_id):
        raise FhirError(
            400,
            f"{resource_id!r} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})",
            code="invalid",
            expression=expression,
        )


@cache
def _model(resource_type: str) -> Any:
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def _fhirpath(resource_type: str, location: tuple[Any, ...]) -> str:
    path = resource_type
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _nul_path(value: Any, path: str) -> str:
    """The FHIRPath-like location of the first string (or name) holding a NUL character in ``value``."""
    if isinstance(value, str):
        return path if "\x00" in value else ""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
        if isinstance(key, str) and "\x00" in key:
            return where
        if found := _nul_path(item, where):
            return found
    return ""


def validate_resource(data: Any, expected_type: str | None = None, where: str = "") -> dict[str, Any]:
    """Return ``data`` as a resource dict, or raise a 400 naming the offending element."""
    if not isinstance(data, dict):
        raise FhirError(400, f"{where or 'the body'} is not a JSON object", code="structure", expression=where or None)
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str):
        raise FhirError(
            400,
            f"{where or 'the resource'} has no resourceType",
            code="required",
            expression=f"{where}resourceType".lstrip("."),
        )
    check_resource_type(resource_type, f"{where}resourceType")
    if expected_type and resource_type != expected_type:
        raise FhirError(
            400,
            f"resourceType {resource_type!r} does not match the URL's {expected_type!r}",
            code="invalid",
            expression=f"{where}resourceType",
        )
    root = where.rstrip(".") or resource_type
    if "id" in data:
        check_id(data["id"], f"{root}.id")
    # FHIR strings cannot hold control characters; NUL, which PostgreSQL cannot store either, is refused
    # (a fast test on the serialised resource, then where; an escaped backslash before "u0000" is no NUL)
    if b"\\u0000" in orjson.dumps(data, default=str) and (where_nul := _nul_path(data, root)):
        message = "FHIR strings cannot hold the character U+0000 (NUL)"
        raise FhirError(400, message, code="invalid", expression=where_nul)
    model = _model(resource_type)
    if model is not None:
        try:
            model.model_validate(data)
        except ValidationError as error:
            problems = error.errors()
            expressions = [_fhirpath(root, tuple(p["loc"])) for p in problems[:20]]
            details = "; ".join(f"{path}: {p['msg']}" for path, p in zip(expressions, problems[:20], strict=True))
            raise FhirError(
                400, f"invalid {resource_type}: {details}", code="structure", expression=expressions
            ) from None
    return data
