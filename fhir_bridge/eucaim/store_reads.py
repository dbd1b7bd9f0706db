"""The one read federated search needs that the store's search API cannot express.

``study_subjects`` counts the distinct Patients that the ImagingStudies matching a search are about.
A FHIR search can count the studies (``Store.count``) but not their distinct subjects: ``Patient?
_has:ImagingStudy:subject:modality=MR&_has:ImagingStudy:subject:bodysite=X`` would accept a patient whose
MR and whose breast study are different studies. The count is what a published studies count rests on
(small-count protection, ``catalogue.disclosure``).

What it reads, so that it can move behind the store's API: the ``version`` rows that the search compiler
selects for the query (``compile_search(query, counting=True)``, its conditions unchanged, pinned at
``query.at_seq``), and the ``idx_reference`` rows of those ImagingStudies with ``param = 'subject'`` and
``target_type = 'Patient'`` valid at the same seq; it returns ``COUNT(DISTINCT target_id)``. A store method
``count_distinct(query, reference_parameter)`` would replace it.
"""

from __future__ import annotations

from sqlalchemy import distinct, func, select

from fhir_bridge.search.query import SearchQuery
from fhir_bridge.search.sql import compile_search, index_valid
from fhir_bridge.store.store import Store
from fhir_bridge.store.tables import REFERENCE, VERSION


def study_subjects(store: Store, query: SearchQuery) -> int:
    """Distinct subject Patients of the ImagingStudies matching ``query`` (an ImagingStudy search)."""
    assert query.resource_type == "ImagingStudy" and query.at_seq is not None
    matching = compile_search(query, counting=True).with_only_columns(VERSION.c.res_pk)
    subject = REFERENCE.alias("study_subject")
    statement = select(func.count(distinct(subject.c.target_id))).where(
        subject.c.res_pk.in_(matching),
        subject.c.res_type == "ImagingStudy",
        subject.c.param == "subject",
        subject.c.target_type == "Patient",
        index_valid(subject, query.at_seq),
    )
    with store.engines.reader.connect() as connection:
        return connection.execute(statement).scalar_one()
