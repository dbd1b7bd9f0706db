"""What a request needs: the SMART permissions of each FHIR interaction, push and export.

The REST mapping follows SMART App Launch v2: read, vread and history need ``r``; search needs
``s`` on the searched type, ``s`` on every type a chain or ``_has`` looks into, and ``r`` on every
type ``_include``/``_revinclude`` returns; create ``c``, update and patch ``u``, delete ``d``;
conditional interactions also need what their criteria search (``s`` on the type and on every
type a chain or ``_has`` of the criteria reaches), and so do conditional references in a Bundle
(``Patient?identifier=...``) and ``_typeFilter`` queries of an export: every search the server runs
on a client's behalf is authorised as that client's search, or it would answer (200 vs 201, 404 vs
200, an export's content) what a REST search of the client is refused. Paths this module does not
know need read and search on every type: a route added later is closed until it is described here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl

from fhir_bridge.errors import FhirError
from fhir_bridge.search.query import Chain, Clause, Include, ReverseChain, parse_search
from fhir_bridge.security.scopes import ERASE, Permission
from fhir_bridge.spec.registry import resource_types, search_parameters

EVERYTHING = frozenset({Permission("*", "r"), Permission("*", "s")})
# Counts for federated search (EUCAIM search API and Beacon): aggregates only, never patient-level data, so a
# scope of their own (``system/FederatedSearch.s``) that grants no FHIR search.
FEDERATED_SEARCH = Permission("FederatedSearch", "s")
# What a DICOM push writes (fhir_bridge.ingest.dicom): created or updated.
DICOM_PUSH_TYPES = ("Patient", "ImagingStudy", "Endpoint", "Device", "Provenance")


def writes(resource_types: Iterable[str]) -> set[Permission]:
    """Create and update on each type: what a push that merges into existing resources needs."""
    return {Permission(t, letter) for t in resource_types for letter in "cu"}


def reads(resource_types: Iterable[str]) -> set[Permission]:
    return {Permission(t, "r") for t in resource_types}


def search_needs(resource_type: str | None, parameters: Sequence[tuple[str, str]]) -> set[Permission]:
    """``s`` on the searched types and the types chains look into, ``r`` on the included types."""
    if resource_type is None:
        named = [t.strip() for name, raw in parameters if name == "_type" for t in raw.split(",") if t.strip()]
        needed = {Permission(t, "s") for t in named} or {Permission("*", "s")}
    else:
        needed = {Permission(resource_type, "s")}
    try:
        query = parse_search(resource_type, [(n, v) for n, v in parameters if n != "_type"], max_count=1 << 30)
    except FhirError:
        return needed  # the search itself answers 400; nothing beyond the base type is touched
    for clause in query.clauses:
        needed |= _clause_needs(clause)
    for include in query.includes:
        needed |= _include_needs(include)
    return needed


def _clause_needs(clause: Clause) -> set[Permission]:
    if isinstance(clause, Chain):
        found: set[Permission] = set()
        for target, inner in clause.targets.items():
            found |= {Permission(target, "s")} | _clause_needs(inner)
        return found
    if isinstance(clause, ReverseChain):
        return {Permission(clause.source_type, "s")} | _clause_needs(clause.inner)
    return set()


def _include_needs(include: Include) -> set[Permission]:
    if include.reverse:
        return {Permission(include.source_type, "r")}
    if include.target_type:
        return {Permission(include.target_type, "r")}
    if include.parameter is None or include.source_type == "*":
        return {Permission("*", "r")}
    parameter = search_parameters(include.source_type).get(include.parameter)
    targets = parameter.targets if parameter else ()
    return reads(targets) if targets else {Permission("*", "r")}


# What each dimension of the federated counts (/catalogue/counts) searches, beyond Patients and studies.
_COUNT_DIMENSION_TYPES = {"manufacturer": "Device", "condition": "Condition"}


def counts_needs(parameters: Sequence[tuple[str, str]]) -> set[Permission]:
    """Federated counts search Patients and ImagingStudies, and the types their criteria or strata reach."""
    needed = {Permission("Patient", "s"), Permission("ImagingStudy", "s")}
    used = {name for name, _ in parameters} | {value for name, value in parameters if name == "stratify"}
    return needed | {Permission(t, "s") for name, t in _COUNT_DIMENSION_TYPES.items() if name in used}


def criteria_needs(resource_type: str, criteria: str) -> set[Permission]:
    """What the search of conditional criteria (``identifier=x``, or ``Type?identifier=x``) needs."""
    if criteria.startswith(f"{resource_type}?"):
        criteria = criteria[len(resource_type) + 1 :]
    return search_needs(resource_type, _query_pairs(criteria))


def rest_needs(
    method: str,
    segments: Sequence[str],
    parameters: Sequence[tuple[str, str]],
    *,
    if_none_exist: str | None = None,
) -> set[Permission]:
    """The permissions of one FHIR REST request, from its method and path below the FHIR base.

    ``POST [base]`` (batch/transaction) and the ``_search`` POSTs carry their real needs in the
    body: here they need no more than an authenticated client, and the route checks the body
    with ``bundle_needs`` / ``search_needs``.
    """
    method = method.upper()
    count = len(segments)
    if count == 0:
        if method in ("GET", "HEAD"):
            return search_needs(None, parameters)
        return set()  # POST [base]: checked entry by entry (bundle_needs)
    if any(segment.startswith("$") for segment in segments):
        found = _operation_needs(method, segments, parameters)
        return set(EVERYTHING) if found is None else found
    head = segments[0]
    if head == "_search" and count == 1:
        return set()  # form-encoded: checked by the route
    if head == "_history" and count == 1:
        return {Permission("*", "r")}
    if head.startswith(("$", "_")) or not head[:1].isupper():
        return set(EVERYTHING)
    if count == 1:
        return _type_level(method, head, parameters, if_none_exist)
    if count == 2 and segments[1] == "_search":
        return {Permission(head, "s")}  # and the form body, checked by the route
    if count == 2 and segments[1] == "_history":
        return {Permission(head, "r")}
    if count == 2 and not segments[1].startswith(("$", "_")):
        return {
            "GET": {Permission(head, "r")},
            "HEAD": {Permission(head, "r")},
            "PUT": {Permission(head, "u")},
            "PATCH": {Permission(head, "u")},
            "DELETE": {Permission(head, "d")},
        }.get(method, set(EVERYTHING))
    if method in ("GET", "HEAD") and segments[2] == "_history" and count in (3, 4):
        return {Permission(head, "r")}
    if method in ("GET", "HEAD") and count == 3 and not segments[2].startswith(("$", "_")):
        # compartment search: Patient/[id]/ImagingStudy or Patient/[id]/*
        return search_needs(None if segments[2] == "*" else segments[2], parameters) | {Permission(head, "r")}
    return set(EVERYTHING)


def _operation_needs(
    method: str, segments: Sequence[str], parameters: Sequence[tuple[str, str]]
) -> set[Permission] | None:
    """The needs of the operations of ``interactions.operations`` (None: an operation not described here).

    ``$meta`` reads (``r`` on the type, on every type at system level); ``$meta-add``/``$meta-delete``
    update (``u``); ``$everything`` is a read of the Patient and a search of its compartment (``s`` on the
    ``_type``s, else on every type), as ``Patient/[id]/*``; ``$validate`` carries its mode in the body:
    its route checks ``validate_needs``."""
    operation, head, count = segments[-1], segments[0], len(segments)
    if operation == "$meta" and method in ("GET", "HEAD"):
        if count == 1:
            return {Permission("*", "r")}
        if count in (2, 3) or (count == 5 and segments[2] == "_history"):
            return {Permission(head, "r")}
    if operation in ("$meta-add", "$meta-delete") and method == "POST" and count == 3:
        return {Permission(head, "u")}
    if operation == "$validate" and method == "POST" and count in (2, 3):
        return set()
    if operation == "$erase" and head == "Patient" and count == 3 and method == "POST":
        return {Permission("Patient", ERASE)}
    if operation == "$everything" and head == "Patient" and count == 3 and method in ("GET", "HEAD"):
        types = [(name, value) for name, value in parameters if name == "_type"]
        return {Permission("Patient", "r")} | search_needs(None, types)
    return None


def validate_needs(resource_type: str, mode: str | None) -> set[Permission]:
    """``$validate``: with a mode it makes the write in a dry run, so it needs what the write needs;
    without one it reads nothing."""
    action = {"create": "c", "update": "u", "delete": "d"}.get(mode or "")
    return {Permission(resource_type, action)} if action else set()


def _type_level(
    method: str, resource_type: str, parameters: Sequence[tuple[str, str]], if_none_exist: str | None
) -> set[Permission]:
    if method in ("GET", "HEAD"):
        return search_needs(resource_type, parameters)
    action = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}.get(method)
    if action is None:
        return set(EVERYTHING)
    needed = {Permission(resource_type, action)}
    criteria = [(k, v) for k, v in parameters if k not in ("_format", "_pretty")]
    if method != "POST" or criteria:  # conditional update, patch, delete; a create with criteria in its URL
        needed |= search_needs(resource_type, criteria)
    if method == "POST" and if_none_exist:
        needed |= criteria_needs(resource_type, if_none_exist)
    return needed


def bundle_needs(bundle: object) -> set[Permission]:
    """The permissions of every entry of a batch or transaction Bundle (malformed entries need none:
    the Bundle is refused for them anyway, before anything is read or written)."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
        return set()
    needed: set[Permission] = set()
    for entry in bundle["entry"]:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            continue
        path, _, query = request["url"].partition("?")
        segments = [s for s in path.split("/") if s]
        parameters = _query_pairs(query)
        method = str(request.get("method", "GET"))
        if_none_exist = request.get("ifNoneExist")
        needed |= rest_needs(
            method, segments, parameters, if_none_exist=if_none_exist if isinstance(if_none_exist, str) else None
        )
        needed |= _conditional_reference_needs(entry.get("resource"))
    return needed


def _conditional_reference_needs(node: object) -> set[Permission]:
    """What the conditional references (``Type?criteria``) inside an entry's resource search."""
    needed: set[Permission] = set()
    if isinstance(node, list):
        for item in node:
            needed |= _conditional_reference_needs(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and "?" in value:
                resource_type, _, criteria = value.partition("?")
                if resource_type in resource_types():
                    needed |= search_needs(resource_type, _query_pairs(criteria))
            elif isinstance(value, dict | list):
                needed |= _conditional_reference_needs(value)
    return needed


def type_filter_needs(type_filters: dict[str, list[str]]) -> set[Permission]:
    """What the ``_typeFilter`` queries of an export search, each a search of its type."""
    return {
        p for resource_type, queries in type_filters.items() for q in queries for p in criteria_needs(resource_type, q)
    }


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)
