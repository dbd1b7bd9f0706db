"""Subjects and studies meeting EUCAIM criteria, counted from the store with FHIR searches.

The counts mean what Samply Focus's SQL backend counts in the EUCAIM CDM (``src/eucaim_sql.rs``), so
that a node answers the same whichever backend its Focus agent uses:

- the subjects of a dataset are its Patients with at least one Condition (the CDM hangs every study
  and every date off a diagnosis: a patient without one has no place in it);
- ``subjects``: those meeting the patient criteria (gender: ``Patient.gender``; diagnosis: a
  ``Condition.code`` of the patient); the imaging criteria do not narrow it;
- ``studies``: the ImagingStudies of those subjects meeting every imaging criterion, each on its own
  (a series with the modality, a series with the body site, a series performed by a Device of the
  manufacturer; not necessarily the same series).

Each criterion becomes the store codes its concept stands for (``concepts``), ORed, in one search
parameter; criteria are ANDed. Every count of one answer is pinned to one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhir_bridge.eucaim.concepts import MANUFACTURER, Concepts
from fhir_bridge.eucaim.criteria import PATIENT_PARAMETERS, STUDY_PARAMETERS, Criterion
from fhir_bridge.search.query import SearchQuery, parse_search
from fhir_bridge.search.runner import count_distinct_targets, count_matches
from fhir_bridge.store.store import Store

ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"
# the population: Patients that a Condition names as its subject (Condition.subject is mandatory)
HAS_DIAGNOSIS = "_has:Condition:subject:subject:missing"
# criterion -> the search parameter on Patient (patient criteria) or ImagingStudy (imaging criteria)
SEARCH_PARAMETER = {
    "gender": "gender",
    "diagnosis": "_has:Condition:subject:code",
    "modality": "modality",
    "bodyPart": "bodysite",
    "manufacturer": "performer:Device.manufacturer",
}
STUDY_SUBJECT = "subject:Patient."


@dataclass(frozen=True)
class Counts:
    subjects: int  # Patients of the population meeting the patient criteria
    studies: int  # their ImagingStudies meeting the imaging criteria
    study_subjects: int  # the distinct Patients those studies are about: what ``studies`` rests on


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$")


def _values(criterion: Criterion, concepts: Concepts) -> str | None:
    """The store values of a criterion's concept as one search value (ORed), None when nothing maps to it."""
    codes = concepts.store_codes(criterion.concept)
    if criterion.parameter == "gender":
        values = [_escape(code) for system, code in codes if system == ADMINISTRATIVE_GENDER]
    elif criterion.parameter == "manufacturer":
        values = [_escape(name) for system, name in codes if system == MANUFACTURER]
    else:
        values = [
            f"{_escape(system)}|{_escape(code)}"
            for system, code in codes
            if system not in (MANUFACTURER, ADMINISTRATIVE_GENDER)
        ]
    return ",".join(sorted(set(values))) or None


def _parameters(
    criteria: Sequence[Criterion], concepts: Concepts, levels: tuple[str, ...]
) -> list[tuple[str, str]] | None:
    """Search parameters of the criteria at one level; None when one of them can match nothing."""
    found = []
    for criterion in criteria:
        if criterion.parameter not in levels:
            continue
        value = _values(criterion, concepts)
        if value is None:
            return None  # a concept no store code means: nothing can match
        found.append((SEARCH_PARAMETER[criterion.parameter], value))
    return found


def _query(resource_type: str, parameters: list[tuple[str, str]], at_seq: int) -> SearchQuery:
    # internal searches: more ORed codes and chain links than a client's search may use
    query = parse_search(
        resource_type, parameters, strict=True, max_chain_depth=4, max_parameters=40, max_or_values=400
    )
    query.at_seq = at_seq
    return query


def count(store: Store, concepts: Concepts, criteria: Sequence[Criterion], at_seq: int) -> Counts:
    """The counts of one dataset (the node's store) for ``criteria``, as of commit ``at_seq``."""
    on_patient = _parameters(criteria, concepts, PATIENT_PARAMETERS)
    if on_patient is None:
        return Counts(0, 0, 0)
    subjects = count_matches(store, _query("Patient", [(HAS_DIAGNOSIS, "false"), *on_patient], at_seq))
    on_study = _parameters(criteria, concepts, STUDY_PARAMETERS)
    if not subjects or on_study is None:
        return Counts(subjects, 0, 0)
    chained = [(STUDY_SUBJECT + name, value) for name, value in [(HAS_DIAGNOSIS, "false"), *on_patient]]
    studies_query = _query("ImagingStudy", [*chained, *on_study], at_seq)
    studies = count_matches(store, studies_query)
    return Counts(
        subjects, studies, count_distinct_targets(store, studies_query, "subject", "Patient") if studies else 0
    )
