"""Parse incoming JSON and validate resources as FHIR R4 4.0.1 (``spec.validator``) before any write.

What decides valid/invalid is the R4 specification's own definitions, as data (structure, cardinality,
types, required bindings, json.html rules): see ``fhir_bridge/spec/validator.py``. Every problem found
becomes one issue of the 400's OperationOutcome, naming its element.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.spec.registry import resource_types
from fhir_bridge.spec.validator import Issue, validator

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


def validate_resource(
    data: Any, expected_type: str | None = None, where: str = "", *, strict: bool = False
) -> dict[str, Any]:
    """Return ``data`` as a resource dict, or raise a 400 naming the offending elements.

    ``where`` locates the resource in a Bundle (``Bundle.entry[2].resource.``); ``strict`` (``Prefer:
    handling=strict``) also refuses what the spec says SHOULD NOT appear (the validator's warnings).
    """
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
    issues = validator().validate(data, root, strict=strict)
    if issues and issues[0].severity == "error":
        raise _invalid(issues)
    return data


def _invalid(issues: list[Issue]) -> FhirError:
    """A 400 whose OperationOutcome has one issue per problem; ``diagnostics`` and ``expression`` sum them up."""
    errors = [issue for issue in issues if issue.severity == "error"]
    summary = "; ".join(f"{issue.expression}: {issue.message}" for issue in errors[:10])
    if len(errors) > 10:
        summary += f"; and {len(errors) - 10} more"
    return FhirError(
        400,
        summary,
        code=errors[0].code,
        expression=list(dict.fromkeys(issue.expression for issue in errors)),
        issues=[_outcome_issue(issue) for issue in issues],
    )


def _outcome_issue(issue: Issue) -> dict[str, Any]:
    return {
        "severity": issue.severity,
        "code": issue.code,
        "diagnostics": f"{issue.expression}: {issue.message}",
        "expression": [issue.expression],
    }
