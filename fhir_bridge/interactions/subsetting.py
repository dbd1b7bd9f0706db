"""``_summary`` and ``_elements``: return part of a resource, marked SUBSETTED (R4 search.html#summary)."""

from __future__ import annotations

from typing import Any

from fhir_bridge.spec.registry import element_groups

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
ALWAYS = ("resourceType", "id", "meta")


def _keeps(names: list[str] | tuple[str, ...], key: str) -> bool:
    for name in names:
        if name.endswith("[x]") and key.startswith(name[:-3]) and key[len(name) - 3 : len(name) - 2].isupper():
            return True
        if key == name or key == f"_{name}":
            return True
    return False


def _mark(subset: dict[str, Any]) -> dict[str, Any]:
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset


def subset(resource: dict[str, Any], summary: str | None, elements: tuple[str, ...]) -> dict[str, Any]:
    """The part of ``resource`` a client asked for; the resource itself when nothing was asked."""
    groups = element_groups(resource["resourceType"])
    if summary == "true":
        keep = [*ALWAYS, *groups["summary"], *groups["mandatory"]]
    elif summary == "text":
        keep = [*ALWAYS, "text", *groups["mandatory"]]
    elif summary == "data":
        return _mark({k: v for k, v in resource.items() if k != "text"})
    elif elements:
        keep = [*ALWAYS, *groups["mandatory"], *elements]
    else:
        return resource
    return _mark({k: v for k, v in resource.items() if k in ALWAYS or _keeps(keep, k)})
