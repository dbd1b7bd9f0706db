"""The three kinds of patch (http.html#patch) and which one a request sends.

- JSON Patch (RFC 6902, ``application/json-patch+json``): an array of operations (``jsonpatch``).
- JSON Merge Patch (RFC 7396, ``application/merge-patch+json``): an object merged into the resource,
  ``null`` removing a member. A JSON *object* sent as ``application/json`` is one too (fhirpy sends
  partial updates so); a JSON Patch is always an array, so the two cannot be confused.
- FHIRPath Patch (fhirpatch.html, ``application/fhir+json``): a ``Parameters`` resource
  (``interactions.fhirpath_patch``).

In a transaction or batch (http.html#transaction) a PATCH entry carries a ``Binary`` (its
``contentType`` says JSON Patch or merge patch, its ``data`` the base64 patch) or a ``Parameters``
resource (FHIRPath Patch).

An array or object a patch leaves empty is removed: FHIR JSON has no empty arrays or objects
(json.html), so "remove the last identifier" means "no identifier".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jsonpatch
import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.fhirpath_patch import apply_fhirpath_patch


class PatchKind(StrEnum):
    """A kind of patch, by the media type it is sent as."""

    JSON_PATCH = "application/json-patch+json"
    MERGE_PATCH = "application/merge-patch+json"
    FHIRPATH_PATCH = "application/fhir+json"


# What the CapabilityStatement lists as patchFormat: every kind this module applies.
PATCH_FORMATS = tuple(kind.value for kind in PatchKind)
FHIR_JSON_TYPES = ("application/fhir+json", "application/json+fhir")


@dataclass(frozen=True)
class Patch:
    kind: PatchKind
    body: Any


def patch_of(media_type: str, body: Any) -> Patch:
    """The patch a PATCH request sends: by its media type (``type/subtype``, lower case) and body shape."""
    if media_type == PatchKind.JSON_PATCH or (media_type == "application/json" and isinstance(body, list)):
        if not isinstance(body, list):
            raise FhirError(400, "a JSON Patch body is an array of operations", code="invalid")
        return Patch(PatchKind.JSON_PATCH, body)
    if media_type == PatchKind.MERGE_PATCH or media_type == "application/json":
        if not isinstance(body, dict):
            raise FhirError(400, "a JSON Merge Patch body is a JSON object", code="invalid")
        return Patch(PatchKind.MERGE_PATCH, body)
    if media_type in FHIR_JSON_TYPES:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FhirError(
                400,
                "a FHIRPath Patch is a Parameters resource (send JSON Patch as application/json-patch+json)",
                code="invalid",
                expression="resourceType",
            )
        return Patch(PatchKind.FHIRPATH_PATCH, body)
    raise FhirError(
        415,
        f"PATCH takes {', '.join(PATCH_FORMATS)} or application/json, not {media_type or 'no Content-Type'!r}",
        code="not-supported",
    )


def entry_patch(resource: Any, where: str) -> Patch:
    """The patch of a transaction or batch entry: a Binary holding a JSON (Merge) Patch, or Parameters."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return Patch(PatchKind.FHIRPATH_PATCH, resource)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary" or "data" not in resource:
        raise FhirError(
            400,
            f"{where}.resource of a PATCH must be a Binary holding a JSON Patch, or a Parameters resource "
            "holding a FHIRPath Patch",
            code="invalid",
            expression=f"{where}.resource",
        )
    media_type = str(resource.get("contentType") or PatchKind.JSON_PATCH).split(";", 1)[0].strip().lower()
    try:
        body = orjson.loads(base64.b64decode(resource["data"]))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise FhirError(
            400,
            f"{where}.resource.data is not a base64 JSON Patch",
            code="invalid",
            expression=f"{where}.resource.data",
        ) from None
    if media_type not in (PatchKind.JSON_PATCH, PatchKind.MERGE_PATCH, "application/json"):
        raise FhirError(
            400,
            f"{where}.resource.contentType must be {PatchKind.JSON_PATCH} or {PatchKind.MERGE_PATCH}",
            code="invalid",
            expression=f"{where}.resource.contentType",
        )
    return patch_of(media_type, body)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2: ``patch`` merged into ``target`` (a new value; neither argument changes)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


def _without_empty(value: Any) -> Any:
    """``value`` without the arrays and objects that are (or become) empty."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v != {} and v != []}
    if isinstance(value, list):
        kept_items = [_without_empty(v) for v in value]
        return [v for v in kept_items if v != {} and v != []]
    return value


def apply_patch(resource: dict[str, Any], patch: Patch, reference: str) -> dict[str, Any]:
    """``resource`` with ``patch`` applied (a new dict): 422 when the patch does not apply to it."""
    if patch.kind is PatchKind.FHIRPATH_PATCH:
        patched = apply_fhirpath_patch(resource, patch.body)
    elif patch.kind is PatchKind.MERGE_PATCH:
        patched = merge_patch(resource, patch.body)
    else:
        try:
            patched = jsonpatch.apply_patch(resource, patch.body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, ValueError) as error:
            raise FhirError(
                422, f"the JSON Patch cannot be applied to {reference}: {error}", code="processing"
            ) from None
    if not isinstance(patched, dict):
        raise FhirError(422, f"the patch does not leave {reference} a JSON object", code="processing")
    return _without_empty(patched)
