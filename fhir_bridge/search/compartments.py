"""Membership of a Patient compartment: resources linked to a Patient by the spec's compartment parameters.

The R4 CompartmentDefinition for Patient (``spec.registry.patient_compartment``) names, per resource
type, the reference parameters that put a resource in a Patient's compartment. ``Patient/[id]/Type``
searches and Patient/Group bulk exports both ask this question, of one Patient or of many.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select

from fhir_bridge.search.query import Compartment
from fhir_bridge.spec.registry import patient_compartment
from fhir_bridge.store.schema import REFERENCE, VERSION, index_valid

Owners = Select[Any] | Sequence[str]  # ids of Patients, listed or selected


def compartment_parameters(resource_type: str) -> list[str]:
    """The reference parameters of ``resource_type`` that link it into a Patient's compartment."""
    return [p for p in patient_compartment().get(resource_type, []) if p != "{def}"]


def in_compartment(
    compartment: Compartment, resource_type: str | None, at_seq: int, types: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    """Versions in ``compartment`` (of ``resource_type``, else of ``types`` or any type in it) at ``at_seq``.

    An IN list per type from the reference index: the compartment drives the search."""
    types = (resource_type,) if resource_type else types or tuple(patient_compartment())
    conditions = []
    for each_type in types:
        parameters = compartment_parameters(each_type)
        if not parameters:
            continue
        reference = REFERENCE.alias()
        linked = select(reference.c.res_pk).where(
            reference.c.res_type == each_type,
            reference.c.param.in_(parameters),
            reference.c.target_type == compartment.owner_type,
            reference.c.target_id == compartment.owner_id,
            index_valid(reference, at_seq),
        )
        conditions.append(and_(VERSION.c.res_type == each_type, VERSION.c.res_pk.in_(linked)))
    return or_(*conditions) if conditions else false()


def in_patient_compartments(
    resource_type: str, owners: Owners | None, at_seq: int, deleted: bool
) -> ColumnElement[bool] | None:
    """Versions of ``resource_type`` in the compartment of one of ``owners`` (None: of any Patient);
    None when every version of the type qualifies (Patients, when any Patient's compartment is asked).

    An EXISTS checked per version, for scans in pk order. A deleted resource belongs where its last
    version was: its links are the index rows its deletion closed (``seq_to`` = the deletion's seq).
    """
    if resource_type == "Patient":
        return VERSION.c.res_id.in_(owners) if owners is not None else None
    reference = REFERENCE.alias()
    valid = reference.c.seq_to == VERSION.c.seq if deleted else index_valid(reference, at_seq)
    conditions = [
        reference.c.res_pk == VERSION.c.res_pk,
        reference.c.param.in_(compartment_parameters(resource_type)),
        reference.c.target_type == "Patient",
        valid,
    ]
    if owners is not None:
        conditions.append(reference.c.target_id.in_(owners))
    return exists(select(reference.c.id).where(*conditions))
