"""``batch`` and ``transaction`` Bundles (FHIR R4 http.html#transaction).

A transaction is one ``Store.write()``: all entries commit together or none does. It follows
the spec's processing order (DELETE, POST, PUT/PATCH, then GET), gives every created resource
its id before any is written so that ``urn:uuid:`` fullUrls and conditional references
(``Patient?identifier=...``) resolve wherever they appear. A batch runs each entry on its own
and reports each entry's outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.patching import entry_patch
from fhir_bridge.interactions.service import FhirInteractions
from fhir_bridge.interactions.writes import STATUS_TEXT, Outcome, Transaction, parse_if_match
from fhir_bridge.search.query import SearchQuery
from fhir_bridge.spec.registry import resource_types
from fhir_bridge.spec.validation import check_resource_type, validate_resource
from fhir_bridge.store.versions import StoredVersion

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    """One Bundle entry, parsed: where it stands, what it asks for."""

    index: int
    method: str
    path: str  # the request url without its query
    query: str
    full_url: str | None
    resource: Any
    request: dict[str, Any]
    existing: StoredVersion | None = None  # what a conditional create matched
    new_id: str | None = None  # the id a create will get

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def parts(self) -> list[str]:
        return [p for p in self.path.strip("/").split("/") if p]


def _parse_entries(bundle: Any) -> tuple[str, list[Entry]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(
            400, "the body posted to the base URL must be a Bundle", code="invalid", expression="resourceType"
        )
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise FhirError(
            400, f"Bundle.type must be batch or transaction, not {kind!r}", code="invalid", expression="Bundle.type"
        )
    entries = []
    for index, raw in enumerate(bundle.get("entry") or []):
        where = f"Bundle.entry[{index}]"
        request = raw.get("request") if isinstance(raw, dict) else None
        if (
            not isinstance(request, dict)
            or not isinstance(request.get("url"), str)
            or request.get("method") not in ORDER
        ):
            raise FhirError(
                400,
                f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
                code="required",
                expression=f"{where}.request",
            )
        split = urlsplit(request["url"])
        path = split.path
        if split.scheme:  # an absolute url on this server: keep the part from the resource type on
            segments = split.path.split("/")
            start = next((i for i, s in enumerate(segments) if s in resource_types()), len(segments))
            path = "/".join(segments[start:])
        entries.append(
            Entry(index, request["method"], path, split.query, raw.get("fullUrl"), raw.get("resource"), request)
        )
    return kind, entries


def _resource_type_of(entry: Entry) -> str:
    parts = entry.parts
    if not parts:
        raise FhirError(
            400,
            f"{entry.where}.request.url names no resource type",
            code="invalid",
            expression=f"{entry.where}.request.url",
        )
    check_resource_type(parts[0], f"{entry.where}.request.url")
    return parts[0]


class BundleProcessor:
    def __init__(self, interactions: FhirInteractions, *, strict: bool = False) -> None:
        self.interactions = interactions
        self.strict = strict  # Prefer: handling=strict: the validator's warnings refuse too

    def process(self, bundle: Any, base: str, return_resources: bool) -> dict[str, Any]:
        kind, entries = _parse_entries(bundle)
        if kind == "transaction":
            responses = self._transaction(entries, base, return_resources)
        else:
            responses = [self._batch_entry(entry, base, return_resources) for entry in entries]
        answer: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{kind}-response"}
        if responses:  # json.html: no empty arrays (an empty batch gets an empty response)
            answer["entry"] = responses
        return answer

    # transaction ---------------------------------------------------------------------------
    def _transaction(self, entries: list[Entry], base: str, return_resources: bool) -> list[dict[str, Any]]:
        for entry in entries:
            self._validate(entry)
        _refuse_duplicates(entries)
        outcomes: dict[int, Outcome] = {}
        try:
            with self.interactions.transaction(rest=True) as transaction:
                for entry in sorted(entries, key=lambda e: ORDER[e.method]):
                    if entry.method == "DELETE":
                        outcomes[entry.index] = self._delete(transaction, entry)
                targets = self._assign_ids(transaction, entries, base)
                for entry in entries:
                    if entry.method in ("POST", "PUT") and isinstance(entry.resource, dict):
                        _rewrite_references(entry.resource, targets, transaction, entry.where)
                for entry in sorted(entries, key=lambda e: ORDER[e.method]):
                    if entry.method in ("POST", "PUT", "PATCH"):
                        outcomes[entry.index] = self._write(transaction, entry)
        except FhirError as error:
            if not error.diagnostics.startswith("Bundle.entry"):
                failing = next(
                    (
                        e
                        for e in sorted(entries, key=lambda e: ORDER[e.method])
                        if e.index not in outcomes and e.method != "GET"
                    ),
                    None,
                )
                if failing is not None:
                    error.diagnostics = f"{failing.where}: {error.diagnostics}"
                    error.args = (error.diagnostics,)
                    error.expression = error.expression or [failing.where]
            raise
        responses = []
        for entry in entries:
            if entry.method in ("GET", "HEAD"):
                responses.append(self._read_entry(entry, base))
            else:
                responses.append(_response(outcomes[entry.index], return_resources, base))
        return responses

    def _validate(self, entry: Entry) -> None:
        resource_type = _resource_type_of(entry) if entry.method != "GET" else None
        if entry.method in ("POST", "PUT"):
            if entry.resource is None:
                raise FhirError(
                    400,
                    f"{entry.where} ({entry.method}) has no resource",
                    code="required",
                    expression=f"{entry.where}.resource",
                )
            validate_resource(entry.resource, resource_type, where=f"{entry.where}.resource.", strict=self.strict)
            if entry.method == "PUT" and len(entry.parts) == 2 and entry.resource.get("id") != entry.parts[1]:
                raise FhirError(
                    400,
                    f"{entry.where}: the resource id does not match request.url {entry.request['url']!r}",
                    code="invalid",
                    expression=f"{entry.where}.resource.id",
                )

    def _assign_ids(self, transaction: Transaction, entries: list[Entry], base: str) -> dict[str, str]:
        """fullUrl -> "Type/id" for every entry that creates or updates, before anything is written."""
        targets: dict[str, str] = {}
        for entry in entries:
            if entry.method == "POST":
                resource_type = entry.parts[0]
                if_none_exist = entry.request.get("ifNoneExist")
                existing = None
                if if_none_exist:
                    query = transaction.criteria(resource_type, if_none_exist, f"{entry.where}.request.ifNoneExist")
                    existing = transaction.single_match(query, f"{entry.where}.request.ifNoneExist")
                entry.existing = existing
                resource_id = existing.res_id if existing else str(uuid.uuid4())
                entry.new_id = resource_id
            elif entry.method == "PUT" and entry.query:
                resource_type = entry.parts[0]
                query = transaction.criteria(resource_type, entry.query, f"{entry.where}.request.url")
                match = transaction.single_match(query, f"{entry.where} (conditional update)")
                resource_id = match.res_id if match else entry.resource.get("id") or str(uuid.uuid4())
                entry.resource["id"] = resource_id
            elif entry.method == "PUT":
                resource_type, resource_id = entry.parts[0], entry.parts[1]
            else:
                continue
            reference = f"{resource_type}/{resource_id}"
            if entry.full_url:
                targets[entry.full_url] = reference
            targets[f"{base}/{reference}"] = reference
        return targets

    @staticmethod
    def _delete(transaction: Transaction, entry: Entry) -> Outcome:
        resource_type = entry.parts[0]
        if entry.query:
            query = transaction.criteria(resource_type, entry.query, f"{entry.where}.request.url")
            match = transaction.single_match(query, f"{entry.where} (conditional delete)")
            if match is None:
                return Outcome(204, message="no resource matched: nothing was deleted")
            return transaction.delete(match.res_type, match.res_id)
        if len(entry.parts) != 2:
            raise FhirError(
                400,
                f"{entry.where}: DELETE needs Type/id or Type?criteria",
                code="invalid",
                expression=f"{entry.where}.request.url",
            )
        return transaction.delete(resource_type, entry.parts[1], parse_if_match(entry.request.get("ifMatch")))

    @staticmethod
    def _write(transaction: Transaction, entry: Entry) -> Outcome:
        if entry.method == "POST":
            if entry.existing is not None:
                return Outcome(200, entry.existing)
            return transaction.create(entry.resource, None, new_id=entry.new_id)
        if entry.method == "PUT":
            return transaction.update(entry.resource, parse_if_match(entry.request.get("ifMatch")))
        patch = entry_patch(entry.resource, entry.where)
        resource_type = entry.parts[0]
        if entry.query:
            query = transaction.criteria(resource_type, entry.query, f"{entry.where}.request.url")
            current = transaction.single_match(query, f"{entry.where} (conditional patch)")
            reference = current.reference if current else entry.request["url"]
        else:
            if len(entry.parts) != 2:
                raise FhirError(
                    400,
                    f"{entry.where}: PATCH needs Type/id or Type?criteria",
                    code="invalid",
                    expression=f"{entry.where}.request.url",
                )
            current = transaction.current(resource_type, entry.parts[1])
            reference = f"{resource_type}/{entry.parts[1]}"
        return transaction.patch(current, reference, patch, parse_if_match(entry.request.get("ifMatch")))

    # batch -------------------------------------------------------------------------------
    def _batch_entry(self, entry: Entry, base: str, return_resources: bool) -> dict[str, Any]:
        try:
            if entry.method in ("GET", "HEAD"):
                return self._read_entry(entry, base)
            self._validate(entry)
            with self.interactions.transaction(rest=True) as transaction:
                if entry.method == "DELETE":
                    outcome = self._delete(transaction, entry)
                else:
                    targets = self._assign_ids(transaction, [entry], base)
                    if isinstance(entry.resource, dict) and entry.method in ("POST", "PUT"):
                        _rewrite_references(entry.resource, targets, transaction, entry.where)
                    outcome = self._write(transaction, entry)
            return _response(outcome, return_resources, base)
        except FhirError as error:
            return {"response": {"status": str(error.status), "outcome": error.outcome()}}

    def _read_entry(self, entry: Entry, base: str) -> dict[str, Any]:
        parts = entry.parts
        parameters = parse_qsl(entry.query, keep_blank_values=True)
        try:
            if len(parts) == 1 and parts[0] != "_history":
                return _bundle_entry(self.interactions.search(parts[0], parameters, base))
            if parts[-1] == "_history":
                resource_type = parts[0] if len(parts) > 1 else None
                resource_id = parts[1] if len(parts) > 2 else None
                return _bundle_entry(self.interactions.history(resource_type, resource_id, parameters, base))
            if len(parts) == 2:
                stored = self.interactions.read(parts[0], parts[1])
            elif len(parts) == 4 and parts[2] == "_history":
                stored = self.interactions.vread(parts[0], parts[1], parts[3])
            else:
                raise FhirError(
                    400,
                    f"{entry.where}: cannot read {entry.request['url']!r}",
                    code="not-supported",
                    expression=f"{entry.where}.request.url",
                )
        except FhirError as error:
            return {"response": {"status": str(error.status), "outcome": error.outcome()}}
        assert stored.content is not None  # read and vread answer 410 for a deletion
        return {
            "fullUrl": f"{base}/{stored.reference}",
            "resource": orjson.Fragment(stored.content),
            "response": {"status": "200 OK", "etag": stored.etag, "lastModified": stored.last_modified},
        }


def _refuse_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("PUT", "DELETE", "PATCH") and len(entry.parts) == 2 and not entry.query:
            key = "/".join(entry.parts)
            if key in seen:
                raise FhirError(
                    400,
                    f"Bundle.entry[{seen[key]}] and Bundle.entry[{entry.index}] both change {key}",
                    code="invalid",
                    expression=f"Bundle.entry[{entry.index}]",
                )
            seen[key] = entry.index


def _rewrite_references(node: Any, targets: dict[str, str], transaction: Transaction, where: str) -> None:
    """Replace fullUrls and conditional references by the ``Type/id`` they resolve to."""
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, targets, transaction, where)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "reference" and isinstance(value, str):
            node[key] = _resolve(value, targets, transaction, where)
        elif isinstance(value, dict | list):
            _rewrite_references(value, targets, transaction, where)


def _resolve(reference: str, targets: dict[str, str], transaction: Transaction, where: str) -> str:
    if reference in targets:
        return targets[reference]
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        raise FhirError(
            400,
            f"{where}: the reference {reference!r} matches no fullUrl in the Bundle",
            code="not-found",
            expression=f"{where}.resource",
        )
    path, _, query_string = reference.partition("?")
    if query_string and path in resource_types():
        query: SearchQuery = transaction.criteria(
            path, query_string, f"{where}: the conditional reference {reference!r}"
        )
        matches = transaction.find(query, limit=2)
        if len(matches) != 1:
            found = "no resource" if not matches else "more than one resource"
            raise FhirError(
                412 if matches else 404,
                f"{where}: the conditional reference {reference!r} matches {found}",
                code="not-found" if not matches else "multiple-matches",
                expression=f"{where}.resource",
            )
        return matches[0].reference
    return reference


def _bundle_entry(bundle: dict[str, Any]) -> dict[str, Any]:
    """A search or history answered inside a batch: its Bundle has no URL of its own, so its fullUrl is
    its id as a URN (bundle.html: an entry carrying a resource has a fullUrl)."""
    return {"fullUrl": f"urn:uuid:{bundle['id']}", "resource": bundle, "response": {"status": "200 OK"}}


def _response(outcome: Outcome, return_resources: bool, base: str) -> dict[str, Any]:
    stored = outcome.stored
    response: dict[str, Any] = {"status": STATUS_TEXT.get(outcome.status, str(outcome.status))}
    entry: dict[str, Any] = {}
    if stored is not None:
        response["location"] = f"{stored.reference}/_history/{stored.version}"
        response["etag"] = stored.etag
        response["lastModified"] = stored.last_modified
        if return_resources and stored.content is not None:
            entry["fullUrl"] = f"{base}/{stored.reference}"  # bundle.html: with the resource, its fullUrl
            entry["resource"] = orjson.Fragment(stored.content)
    entry["response"] = response
    return entry
