"""A federated-search question as EUCAIM concepts: from an EUCAIM API query string or Beacon filters.

Both front doors speak Focus's vocabulary (``focus-eucaim-api``): the API by parameter and value
(``gender=male``), the Beacon by concept (``EUCAIM:COM1001366``). Either becomes the same list of
criteria, ANDed, so that a question asked through one door gets the same answer (and the same noise)
through the other. What the node cannot answer is refused with the accepted parameters or values listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhir_bridge.errors import FhirError
from fhir_bridge.eucaim.concepts import Concept, Concepts

# The criteria federated search knows how to look for (``counting`` holds how): Focus's categories.
PATIENT_PARAMETERS = ("gender", "diagnosis")
STUDY_PARAMETERS = ("modality", "bodyPart", "manufacturer")
PARAMETERS = PATIENT_PARAMETERS + STUDY_PARAMETERS


@dataclass(frozen=True, order=True)
class Criterion:
    """One concept the subjects (gender, diagnosis) or their studies (the rest) must have."""

    parameter: str
    concept: str  # EUCAIM code


def canonical(criteria: Sequence[Criterion]) -> str:
    """The question in one canonical text: equal for the same question asked in any order or door."""
    return "&".join(f"{c.parameter}={c.concept}" for c in sorted(set(criteria)))


def accepted_parameters(concepts: Concepts) -> dict[str, list[str]]:
    """The EUCAIM API parameters this node answers and the values of each."""
    return {p: sorted(concepts.api.get(p, {})) for p in PARAMETERS if concepts.api.get(p)}


def searchable(concepts: Concepts) -> list[Concept]:
    """The concepts a Beacon filter may name: those of a parameter the node answers, in a stable order."""
    return sorted(
        (c for c in concepts.concepts.values() if c.parameter in PARAMETERS),
        key=lambda c: (PARAMETERS.index(c.parameter), c.code),
    )


def from_api_query(parameters: Sequence[tuple[str, str]], concepts: Concepts) -> list[Criterion]:
    """Criteria of ``GET /eucaim/search?gender=male&...``: at most one value per parameter, as Focus sends."""
    accepted = accepted_parameters(concepts)
    criteria: list[Criterion] = []
    seen: set[str] = set()
    for name, value in parameters:
        if name not in accepted:
            listing = "; ".join(f"{p}: {', '.join(values)}" for p, values in accepted.items())
            raise FhirError(
                400, f"unknown parameter {name!r}; this node answers {listing}", code="not-supported", expression=name
            )
        if name in seen:
            raise FhirError(
                400,
                f"{name} may be given once (criteria of one category are not combined)",
                code="invalid",
                expression=name,
            )
        seen.add(name)
        code = concepts.api[name].get(value)
        if code is None:
            raise FhirError(
                400,
                f"unknown {name} {value!r}; accepted values: {', '.join(accepted[name])}",
                code="not-supported",
                expression=name,
            )
        criteria.append(Criterion(name, code))
    return criteria


class FilterError(ValueError):
    """A Beacon filter this node cannot answer; the message lists what it can."""


def from_beacon_filters(filters: object, concepts: Concepts) -> tuple[list[Criterion], list[str]]:
    """Criteria of Beacon ``query.filters`` (ontology filters by id, scope ``patients``), and the ids as sent."""
    if filters is None:
        return [], []
    if not isinstance(filters, list):
        raise FilterError("query.filters must be a list of filters")
    criteria, ids = [], []
    for item in filters:
        filter_id, scope = (item, None) if isinstance(item, str) else _ontology_filter(item)
        if scope not in (None, "patients"):
            raise FilterError(f"filter {filter_id} has scope {scope!r}; this beacon answers scope 'patients'")
        concept = concepts.filter_concept(filter_id)
        if concept is None or concept.parameter not in PARAMETERS:
            known = ", ".join(c.curie for c in searchable(concepts))
            raise FilterError(f"unknown filter {filter_id!r}; this beacon answers {known} (see /filtering_terms)")
        criteria.append(Criterion(concept.parameter, concept.code))
        ids.append(filter_id)
    return criteria, ids


def _ontology_filter(item: object) -> tuple[str, str | None]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise FilterError("each filter must be an object with an id (an ontology filter)")
    if "operator" in item or "value" in item:
        raise FilterError(f"filter {item['id']}: alphanumeric filters are not supported, only ontology filters")
    if item.get("similarity", "exact") != "exact":
        raise FilterError(f"filter {item['id']}: only similarity 'exact' is supported")
    scope = item.get("scope")
    return item["id"], scope if isinstance(scope, str) else None
