"""Searches decided on the index tables alone (``planner.index_driven``): the pk sets of the clauses
are intersected and cut to the page before any version row is read. They must answer exactly what
the version-driven statement answers (every clause a condition on each current version, sorted and
cut after): the same pages in the same order, paged by keyset to the end, the same counts, at the
newest commit and pinned to an older one, after updates that change the indexed values, deletes
and re-creations, and with resources that hold several values of one parameter."""

from __future__ import annotations

import json
import random
from typing import Any

from sqlalchemy import func, select

from fhir_bridge.search.batches import BatchScope, resource_batch
from fhir_bridge.search.compiler import compile_search, search_conditions
from fhir_bridge.search.paging import keyset_position, page_statement
from fhir_bridge.search.planner import index_driven
from fhir_bridge.search.query import SearchQuery, parse_search
from fhir_bridge.search.runner import count_distinct_targets, search_page
from fhir_bridge.store.schema import VERSION
from fhir_bridge.store.store import Store

DCM = "http://dicom.nema.org/resources/ontology/DCM"
MODALITIES = ("CT", "MR", "PT")
SITES = ("head", "chest")


def _study(index: int, rng: random.Random) -> dict[str, Any]:
    modalities = rng.sample(MODALITIES, rng.choice((1, 1, 2)))  # some studies have two modalities
    return {
        "resourceType": "ImagingStudy",
        "id": f"s{index}",
        "status": rng.choice(("available", "registered")),
        "subject": {"reference": f"Patient/p{index % 3}"},
        "started": f"2024-{rng.randrange(1, 4):02d}-{rng.randrange(1, 29):02d}T10:00:00Z",
        "series": [
            {
                "uid": f"1.2.3.{index}.{n}",
                "modality": {"system": DCM, "code": modality},
                "bodySite": {"system": "urn:sites", "code": rng.choice(SITES)},
            }
            for n, modality in enumerate(modalities)
        ],
    }


SEARCHES = [
    "modality=CT&started=ge2024-02-01&started=lt2024-03-01",
    "modality=CT,MR&started=ge2024-01-01&started=lt2024-03-01",
    f"modality={DCM}|PT&bodysite=head",
    "modality=CT",
    "modality=CT&status=available&started=ge2024-02-01",
    "modality:not=CT&started=ge2024-02-01&started=lt2024-03-01",
    "modality:missing=false&started=lt2024-02-01",
    "subject=Patient/p1&modality=MR",
    "subject:Patient._id=p2&modality=CT",
    "modality=CT&started=ge2030-01-01&started=lt2030-02-01",  # no match
]


def _version_driven(store: Store, query: SearchQuery, counting: bool) -> Any:
    """The statement as it was before searches were index-driven: every clause on each current version."""
    assert query.at_seq is not None
    conditions = search_conditions(query, query.at_seq)
    if counting:
        return store.scalar(select(func.count()).select_from(VERSION).where(*conditions))
    statement = page_statement(query, conditions, query.at_seq, keyset_position(query), query.count + 1)
    return [tuple(row) for row in store.rows(statement)]


def _query(search: str, at_seq: int, count: int = 4, after: int | None = None) -> SearchQuery:
    parameters = [tuple(part.split("=", 1)) for part in search.split("&")]
    query = parse_search("ImagingStudy", parameters, default_count=count)  # type: ignore[arg-type]
    assert not query.warnings, query.warnings
    query.at_seq = at_seq
    query.after = None if after is None else {"pk": after}
    return query


def _assert_same_answers(store: Store, at_seq: int) -> None:
    for search in SEARCHES:
        query = _query(search, at_seq)
        assert store.scalar(*compile_search(query, counting=True)) == _version_driven(store, query, True), search
        after, pages = None, 0
        while True:
            query = _query(search, at_seq, after=after)
            rows = [tuple(row) for row in store.rows(*compile_search(query))]
            assert rows == _version_driven(store, query, False), (search, after)
            pages += 1
            if len(rows) <= query.count:
                break
            after = rows[query.count - 1][-1]  # the last row of the page: its pk
        assert pages < 40


def test_index_driven_searches_answer_what_the_version_driven_statement_answers(store):
    rng = random.Random(5)
    with store.write() as session:
        for index in range(60):
            session.put(_study(index, rng), "PUT")
    first = store.last_seq()
    assert index_driven(_query(SEARCHES[0], first), first) is not None
    _assert_same_answers(store, first)
    # updates that change modalities and dates (and some that keep them), deletes, re-creations
    with store.write() as session:
        for index in range(0, 60, 3):
            session.put(_study(index, rng), "PUT")
        for index in range(1, 60, 7):
            current = session.current("ImagingStudy", f"s{index}")
            assert current is not None
            session.delete(current)
    with store.write() as session:
        for index in range(1, 30, 7):
            session.put(_study(index, rng), "PUT")
    _assert_same_answers(store, store.last_seq())
    _assert_same_answers(store, first)  # pinned to the first commit: what it matched then


def test_sorted_and_row_parameter_searches_stay_version_driven(store):
    seq = store.last_seq()
    for search in (
        "_id=s1&modality=CT",
        "_lastUpdated=gt2020-01-01&modality=CT",
        "_has:Observation:part-of:status=final",
    ):
        assert index_driven(_query(search, seq), seq) is None, search
    query = _query("modality=CT", seq)
    assert index_driven(query, seq) is not None
    query.sort = parse_search("ImagingStudy", [("_sort", "started")]).sort
    statement, _ = compile_search(query)
    assert "driving_" not in str(statement)  # a sorted page is cut after its sort values: from the versions


def test_callers_that_add_conditions_or_columns_get_the_version_driven_statement(store):
    """Bulk export's filtered batches add their own conditions (``_since``) to a search's page, and the
    distinct-target count swaps its columns: an index-driven page, cut before those conditions, would
    come up short, and its columns are not the version table's."""
    rng = random.Random(9)
    with store.write() as session:
        for index in range(40):
            session.put(_study(index, rng), "PUT")
    with store.write() as session:  # a later commit: these 10 are "since" the first one
        for index in range(40, 50):
            session.put(_study(index, rng), "PUT")
    seq = store.last_seq()
    since = store.rows(select(func.max(VERSION.c.last_updated)).where(VERSION.c.res_id == "s39"))[0][0]
    search = "modality=CT"
    wanted = {
        row[-1]
        for row in store.rows(
            page_statement(_query(search, seq), search_conditions(_query(search, seq), seq), seq, None, 1000)
        )
        if row[4] > since
    }
    assert wanted  # some of the last 10 studies are CT
    found: set[int] = set()
    with store.engines.reader.connect() as connection:
        after = 0
        while True:
            batch = resource_batch(
                connection, BatchScope(seq, since=since), "ImagingStudy", after, 2, [_query(search, seq)]
            )
            found |= {pk for pk, _ in batch}
            if len(batch) < 2:
                break
            after = batch[-1][0]
    assert found == wanted
    studies = [v for v, _ in search_page(store, _query(search, seq, count=1000))]
    subjects = {json.loads(v.content)["subject"]["reference"] for v in studies if v.content}
    assert count_distinct_targets(store, _query(search, seq), "patient", "Patient") == len(subjects)
