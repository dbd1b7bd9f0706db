"""FHIR ConceptMap ``$translate`` semantics, for the code maps a site keeps as FHIR.

One implementation of what a ConceptMap says a code means: a group's elements map a source code
to targets (``equivalence`` ``unmatched`` and ``disjoint`` map to nothing), and a group's
``unmapped`` says what a code without an element becomes (``provided``: the code itself in the
target system; ``fixed``: the given code). Used by the clinical mappings' ``$translate`` and by
the EUCAIM concepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NO_MAPPING = frozenset({"unmatched", "disjoint"})


def targets(element: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The targets of a group element that map (not ``unmatched`` or ``disjoint``)."""
    for target in element.get("target") or []:
        if isinstance(target, dict) and target.get("equivalence") not in NO_MAPPING:
            yield target


class Translation:
    """One ConceptMap, indexed for ``$translate``."""

    def __init__(self, concept_map: dict[str, Any]) -> None:
        self.url = concept_map.get("url")
        self.groups: list[tuple[str | None, str | None, dict[str, list[dict[str, Any]]], dict[str, Any]]] = []
        for group in concept_map.get("group") or []:
            elements: dict[str, list[dict[str, Any]]] = {}
            for element in group.get("element") or []:
                if element.get("code"):
                    elements.setdefault(element["code"], []).extend(targets(element))
            self.groups.append((group.get("source"), group.get("target"), elements, group.get("unmapped") or {}))

    def translate(self, system: str | None, code: str, target: str | None = None) -> list[dict[str, Any]]:
        """The Codings ``code`` (of ``system``, when given) translates to (in ``target``, when given)."""
        found: list[dict[str, Any]] = []
        for source, group_target, elements, unmapped in self.groups:
            if (system is not None and source != system) or (target is not None and group_target != target):
                continue
            if code in elements:
                for mapped in elements[code]:
                    if mapped.get("code"):
                        coding = {"system": group_target, "code": mapped["code"], "display": mapped.get("display")}
                        found.append({k: v for k, v in coding.items() if v})
            elif unmapped.get("mode") == "provided":
                found.append({k: v for k, v in {"system": group_target, "code": code}.items() if v})
            elif unmapped.get("mode") == "fixed" and unmapped.get("code"):
                coding = {"system": group_target, "code": unmapped["code"], "display": unmapped.get("display")}
                found.append({k: v for k, v in coding.items() if v})
        return found
