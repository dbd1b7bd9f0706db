"""Run a search and build its ``searchset`` Bundle: matches, includes, paging links, subsetting.

The first page pins the search to the newest committed ``seq``; the signed cursor in the
``next`` link carries that seq with the keyset position, so every page is answered from the same
state of the store and each match is visited exactly once, whatever is written meanwhile. A ``first``
link (the first page as of that seq) is given; ``previous`` and ``last`` are not: keyset paging over an
arbitrary ``_sort`` would need the search run backwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.limits import Limits
from fhir_bridge.interactions.links import page_url
from fhir_bridge.interactions.subsetting import subset
from fhir_bridge.search.query import MAX_INCLUDE_ITERATIONS, Compartment, SearchQuery, parse_search
from fhir_bridge.search.runner import count_matches, included, search_page
from fhir_bridge.store.store import Store
from fhir_bridge.store.versions import StoredVersion

# What the databases say when a statement is beyond their limits (SQLite: expression depth 1,000, parser
# stack, variables; PostgreSQL: SQLSTATE class 54, program limit exceeded, e.g. stack depth).
_TOO_COMPLEX = (
    "parser stack overflow",
    "expression tree is too large",
    "too many sql variables",
    "too many terms",
    "number of parameters must be between",
)


@contextmanager
def _within_database_limits() -> Iterator[None]:
    """A search whose SQL the database refuses as too complex is a 400 (``too-costly``), not a 500.

    The search limits (settings) keep searches well inside these; this covers configured limits that are not.
    """
    try:
        yield
    except DBAPIError as error:
        state = getattr(error.orig, "sqlstate", None) or ""
        if state.startswith("54") or any(text in str(error.orig).lower() for text in _TOO_COMPLEX):
            raise FhirError(
                400,
                "this search is too complex for the database: use fewer parameters, values or chain links",
                code="too-costly",
            ) from None
        raise


def _resource_json(row: StoredVersion, query: SearchQuery) -> Any:
    if not query.summary and not query.elements:
        assert row.content is not None  # a search finds no deletions
        return orjson.Fragment(row.content)
    return subset(row.resource or {}, query.summary, query.elements)


def _entry(base: str, row: StoredVersion, query: SearchQuery, mode: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{row.reference}", "resource": _resource_json(row, query), "search": {"mode": mode}}


def _included(
    store: Store, query: SearchQuery, matches: list[StoredVersion], limit: int
) -> tuple[list[StoredVersion], bool]:
    """``_include`` / ``_revinclude`` targets of the page, following ``:iterate`` a few rounds.

    At most ``limit`` of them; the flag says whether more were left out.
    """
    assert query.at_seq is not None
    seen = {(r.res_type, r.res_id) for r in matches}
    found: list[StoredVersion] = []
    sources = matches
    cut = False
    for round_number in range(MAX_INCLUDE_ITERATIONS + 1):
        fresh: list[StoredVersion] = []
        for include in query.includes:
            if round_number > 0 and not include.iterate:
                continue
            for row in included(store, include, sources, query.at_seq, limit + 1):
                if (row.res_type, row.res_id) in seen:
                    continue
                if len(found) + len(fresh) >= limit:
                    cut = True
                    break
                seen.add((row.res_type, row.res_id))
                fresh.append(row)
        found += fresh
        if cut or not fresh or not any(i.iterate for i in query.includes):
            break
        sources = fresh
    return found, cut


def run_search(
    store: Store,
    signer: CursorSigner,
    resource_type: str | None,
    parameters: list[tuple[str, str]],
    base: str,
    *,
    strict: bool,
    limits: Limits,
    compartment: Compartment | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    plain = [(k, v) for k, v in parameters if k != "_cursor"]
    query = parse_search(
        resource_type,
        plain,
        strict=strict,
        default_count=limits.default_count,
        max_count=limits.max_count,
        compartment=compartment,
        max_chain_depth=limits.max_chain_depth,
        max_parameters=limits.max_search_parameters,
        max_or_values=limits.max_or_values,
    )
    cursor = next((v for k, v in parameters if k == "_cursor"), None)
    if cursor:
        position = signer.decode(cursor)
        query.at_seq = int(position["s"])
        query.after = position if "pk" in position else None  # a ``first`` link: the pinned first page
    counting_only = query.summary == "count" or query.count == 0
    # without a cursor, search_page reads the newest commit with the page (a count alone: count_matches)
    with _within_database_limits():
        page = [] if counting_only else search_page(store, query)
    has_next = len(page) > query.count
    page = page[: query.count]
    matches = [row for row, _ in page]
    path = path or (f"{base}/{resource_type}" if resource_type else base)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset"}
    if query.total in ("accurate", "estimate") or counting_only:
        with _within_database_limits():
            bundle["total"] = count_matches(store, query)
    links = [{"relation": "self", "url": page_url(path, [*query.used, *([("_cursor", cursor)] if cursor else [])])}]
    if has_next or query.after is not None:  # more than one page: the first, as of the same commit
        first = signer.encode({"s": query.at_seq})
        links.append({"relation": "first", "url": page_url(path, [*query.used, ("_cursor", first)])})
    if has_next:
        last, sort_values = page[-1]
        position = {"s": query.at_seq, "pk": last.pk, "k": sort_values}
        links.append({"relation": "next", "url": page_url(path, [*query.used, ("_cursor", signer.encode(position))])})
    bundle["link"] = links
    entries = [_entry(base, row, query, "match") for row in matches]
    if query.includes and matches:
        included, cut = _included(store, query, matches, limits.max_include)
        entries += [_entry(base, row, query, "include") for row in included]
        if cut:
            query.warnings.append(
                f"more resources are included by _include/_revinclude than the {limits.max_include} a page "
                "carries; only those are here: ask for smaller pages (_count)"
            )
    if query.warnings:
        issues = [{"severity": "warning", "code": "not-supported", "diagnostics": w} for w in query.warnings]
        entries.append(
            {"resource": {"resourceType": "OperationOutcome", "issue": issues}, "search": {"mode": "outcome"}}
        )
    if entries:  # json.html: no empty arrays (a search without matches, _summary=count)
        bundle["entry"] = entries
    return bundle
