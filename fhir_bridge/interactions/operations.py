"""The FHIR operations of the REST API besides Bulk ``$export``: ``$validate``, ``$meta``, ``$meta-add``,
``$meta-delete`` (R4 resource.html#operations) and ``Patient/[id]/$everything`` (patient.html).

Where fhir-bridge departs from the operation definitions, it is said here and in docs/fhir-api.md:
- ``$meta-add`` and ``$meta-delete`` make a new version (like any change): the specification lets them
  change meta in place, but harvesters page on the version sequence (``_history``, Bulk ``_since``)
  and would never see a label added in place. They work on the current version only.
- ``$meta`` of a type or the system lists the tags, security labels and profiles of the current
  resources, with ``lastUpdated`` the newest of theirs.
- ``$validate`` validates against the base R4 definitions; another ``profile`` is an error issue.
- ``$everything`` returns the Patient and its compartment (``Patient/[id]/*``), paged, with ``_since``,
  ``_type``, ``_count`` (and ``_lastUpdated``); resources outside the compartment that these refer to
  are not added (search with ``_include`` for them), nor are ``start``/``end`` supported.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.parameters import parameters_of, single_values, typed_value
from fhir_bridge.interactions.searchset import run_search
from fhir_bridge.interactions.service import FhirInteractions, check_type_in_url
from fhir_bridge.search.query import Compartment
from fhir_bridge.spec.registry import patient_compartment
from fhir_bridge.spec.validation import check_id, validate_resource
from fhir_bridge.store.versions import format_instant

VALIDATE_MODES = ("create", "update", "delete", "profile")
BASE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
EVERYTHING_PARAMETERS = ("_since", "_type", "_count", "_cursor", "_lastUpdated")


@dataclass(frozen=True)
class ValidateRequest:
    """What a ``$validate`` asks: the resource (None for a delete), the mode and the profile."""

    resource: dict[str, Any] | None
    mode: str | None
    profile: str | None


def _outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def _parameters(**values: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": k, **v} for k, v in values.items()]}


def _codings(meta: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    found = meta.get(kind, [])
    if not isinstance(found, list) or not all(isinstance(c, dict) for c in found):
        raise FhirError(400, f"meta.{kind} must be an array of Codings", code="structure", expression=f"meta.{kind}")
    return found


class FhirOperations:
    """The operations over one ``FhirInteractions`` (and so one store)."""

    def __init__(self, interactions: FhirInteractions) -> None:
        self.interactions = interactions

    # $validate ------------------------------------------------------------------------------------
    def validate(self, resource_type: str, resource_id: str | None, asked: ValidateRequest) -> dict[str, Any]:
        """An OperationOutcome: errors when the resource (or, with ``mode``, the write) would be refused.

        As the operation defines, the answer is a 200 whether or not the resource is valid; a 4xx means
        the validation could not be done (an unknown mode, a delete of an unknown resource)."""
        check_type_in_url(resource_type)
        if resource_id is not None:
            check_id(resource_id)
        resource, mode, profile = asked.resource, asked.mode, asked.profile
        if mode in ("update", "delete") and resource_id is None:
            raise FhirError(
                400, f"$validate mode={mode} is invoked on an instance: [type]/[id]/$validate", expression="mode"
            )
        if mode != "delete" and resource is None:
            raise FhirError(400, "$validate needs a resource (the body, or a 'resource' parameter)", code="required")
        issues: list[dict[str, Any]] = []
        if profile is not None and profile != f"{BASE_PROFILE}{resource_type}":
            issues.append(
                {
                    "severity": "error",
                    "code": "not-supported",
                    "diagnostics": f"the profile {profile} is not known to this server (only the base R4 definitions)",
                }
            )
        try:
            if resource is not None:  # (every mode but delete has one)
                validate_resource(copy.deepcopy(resource), resource_type)
                if resource_id is not None and mode == "update" and resource.get("id") != resource_id:
                    raise FhirError(
                        400,
                        f"the resource's id is not {resource_id!r}",
                        code="invalid",
                        expression=f"{resource_type}.id",
                    )
            if mode in ("create", "update", "delete") and not issues:
                self._try_write(resource_type, resource_id, resource, mode)
        except FhirError as error:
            if error.status == 404:  # mode=delete of a resource that is not there: nothing to validate
                raise
            issues += error.outcome()["issue"]
        if not issues:
            what = f"as a {mode}" if mode in ("create", "update", "delete") else "as FHIR R4 4.0.1"
            issues.append({"severity": "information", "code": "informational", "diagnostics": f"valid {what}"})
        return _outcome(issues)

    @staticmethod
    def validate_input(resource_type: str, body: Any, query: list[tuple[str, str]]) -> ValidateRequest:
        """The resource, mode and profile of a ``$validate``: the body is the resource, or a Parameters
        holding it (``resource``) with ``mode`` and ``profile``, which may also be URL parameters."""
        values: dict[str, Any] = dict(query)
        resource = body
        wrapped = isinstance(body, dict) and body.get("resourceType") == "Parameters"
        if wrapped and resource_type == "Parameters":  # a Parameters resource to validate, or its wrapper
            wrapped = any(isinstance(p, dict) and p.get("name") == "resource" for p in body.get("parameter", []))
        if wrapped:
            values |= single_values(parameters_of(body, "$validate"), "Parameters.parameter")
            resource = values.get("resource")
        mode, profile = values.get("mode"), values.get("profile")
        if mode is not None and mode not in VALIDATE_MODES:
            raise FhirError(
                400, f"$validate mode must be one of {', '.join(VALIDATE_MODES)}, not {mode!r}", expression="mode"
            )
        if resource is not None and not isinstance(resource, dict):
            raise FhirError(400, "$validate: the resource is not a JSON object", code="structure")
        return ValidateRequest(resource, mode, profile if isinstance(profile, str) else None)

    def _try_write(self, resource_type: str, resource_id: str | None, resource: Any, mode: str) -> None:
        """Make the write in a dry run: every check a commit makes, then nothing is kept."""
        with self.interactions.dry_run() as transaction:
            if mode == "create":
                transaction.create(copy.deepcopy(resource))
            elif mode == "update":
                transaction.update(copy.deepcopy(resource))
            else:
                assert resource_id is not None
                transaction.delete(resource_type, resource_id)

    # $meta, $meta-add, $meta-delete ------------------------------------------------------------------
    def meta(self, resource_type: str | None, resource_id: str | None, version: str | None = None) -> dict[str, Any]:
        """A Parameters whose ``return`` is the meta of a resource (version), or the union of a type's or
        the system's tags, security labels and profiles."""
        if resource_type is not None:
            check_type_in_url(resource_type)
        if resource_id is not None:
            assert resource_type is not None
            stored = (
                self.interactions.vread(resource_type, resource_id, version)
                if version is not None
                else self.interactions.read(resource_type, resource_id)
            )
            return _parameters(**{"return": {"valueMeta": (stored.resource or {}).get("meta", {})}})
        found, newest = self.interactions.store.meta_in_use(resource_type)
        meta: dict[str, Any] = {"lastUpdated": format_instant(newest or time.time_ns() // 1000)}
        codings = {
            k: [{"system": s, "code": c} if s else {"code": c} for s, c in found[k]] for k in ("tag", "security")
        }
        meta |= {k: v for k, v in codings.items() if v}
        if found["profile"]:
            meta["profile"] = [uri for (uri,) in found["profile"]]
        return _parameters(**{"return": {"valueMeta": meta}})

    def change_meta(self, resource_type: str, resource_id: str, body: Any, *, add: bool) -> dict[str, Any]:
        """``$meta-add`` (``add``) or ``$meta-delete``: a new version with the tags, security labels and
        profiles of the ``meta`` parameter added or removed (nothing changes: no new version)."""
        check_type_in_url(resource_type)
        check_id(resource_id)
        operation = "$meta-add" if add else "$meta-delete"
        change = next((typed_value(p) for p in parameters_of(body, operation) if p["name"] == "meta"), (None, None))[1]
        if not isinstance(change, dict):
            raise FhirError(
                400, f"{operation} needs a 'meta' parameter (valueMeta)", code="required", expression="meta"
            )
        reference = f"{resource_type}/{resource_id}"
        with self.interactions.transaction() as transaction:
            current = transaction.current(resource_type, resource_id)
            if current is None:
                raise FhirError(404, f"{reference} is not known", code="not-found")
            if current.deleted:
                raise FhirError(410, f"{reference} was deleted", code="deleted")
            resource = current.resource or {}
            meta = dict(resource.get("meta") or {})
            for kind in ("tag", "security"):
                meta[kind] = _merge_codings(_codings(meta, kind), _codings(change, kind), add)
            profiles = [p for p in meta.get("profile", [])]
            wanted = change.get("profile", [])
            if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
                raise FhirError(
                    400, "meta.profile must be an array of URLs", code="structure", expression="meta.profile"
                )
            profiles = (
                [*profiles, *(p for p in wanted if p not in profiles)]
                if add
                else [p for p in profiles if p not in wanted]
            )
            meta["profile"] = profiles
            resource["meta"] = {k: v for k, v in meta.items() if v != []}
            validate_resource(resource, resource_type)
            outcome = transaction.update(resource, None, current)
        assert outcome.stored is not None
        return _parameters(**{"return": {"valueMeta": (outcome.stored.resource or {}).get("meta", {})}})

    # Patient/[id]/$everything -------------------------------------------------------------------------
    def everything(self, patient_id: str, parameters: list[tuple[str, str]], base: str) -> dict[str, Any]:
        """The Patient and its compartment, as a paged searchset (see the module docstring)."""
        self.interactions.read("Patient", patient_id)  # 404 / 410 for a Patient that is not there
        criteria: list[tuple[str, str]] = []
        for name, value in parameters:
            if name not in EVERYTHING_PARAMETERS:
                raise FhirError(
                    400,
                    f"$everything takes {', '.join(EVERYTHING_PARAMETERS)}; {name!r} is not supported",
                    code="not-supported",
                    expression=name,
                )
            criteria.append(("_lastUpdated", f"gt{value}") if name == "_since" else (name, value))
        types = {t.strip() for name, value in criteria if name == "_type" for t in value.split(",") if t.strip()}
        outside = sorted(t for t in types if t != "Patient" and not patient_compartment().get(t))
        if outside:
            raise FhirError(
                400,
                f"_type: {', '.join(outside)} is not in the Patient compartment",
                code="invalid",
                expression="_type",
            )
        interactions = self.interactions
        path = f"{base}/Patient/{patient_id}/$everything"
        bundle = run_search(
            interactions.store,
            interactions.signer,
            None,
            criteria,
            base,
            strict=True,
            limits=interactions.limits,
            compartment=Compartment("Patient", patient_id),
            path=path,
        )
        if any(name == "_cursor" for name, _ in criteria) or (types and "Patient" not in types):
            return bundle
        # the first page starts with the Patient itself, if it meets the same criteria
        itself = [(n, v) for n, v in criteria if n not in ("_type", "_count")] + [("_id", patient_id)]
        found = run_search(
            interactions.store, interactions.signer, "Patient", itself, base, strict=True, limits=interactions.limits
        )
        bundle["entry"] = [*found.get("entry", []), *bundle.get("entry", [])]
        if not bundle["entry"]:
            del bundle["entry"]
        return bundle


def _merge_codings(current: list[dict[str, Any]], change: list[dict[str, Any]], add: bool) -> list[dict[str, Any]]:
    """Tags or security labels with ``change`` added or removed; a coding is its system and code."""
    names = {(c.get("system"), c.get("code")) for c in change}
    if not add:
        return [c for c in current if (c.get("system"), c.get("code")) not in names]
    have = {(c.get("system"), c.get("code")) for c in current}
    added = []
    for coding in change:
        key = (coding.get("system"), coding.get("code"))
        if key not in have:
            have.add(key)
            added.append(coding)
    return [*current, *added]
