"""The ``history`` interactions (instance, type, system): a Bundle of versions, newest first, paged by seq."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.interactions.cursors import CursorSigner
from fhir_bridge.interactions.limits import Limits
from fhir_bridge.interactions.links import page_url
from fhir_bridge.interactions.writes import STATUS_TEXT
from fhir_bridge.search.query import parse_count
from fhir_bridge.search.values import date_range
from fhir_bridge.store.store import Store
from fhir_bridge.store.versions import StoredVersion


def history_bundle(
    store: Store,
    signer: CursorSigner,
    limits: Limits,
    resource_type: str | None,
    resource_id: str | None,
    parameters: list[tuple[str, str]],
    base: str,
) -> dict[str, Any]:
    values = dict(parameters)
    count = limits.default_count
    if "_count" in values:
        count = parse_count(values["_count"], limits.max_count)
    since = _instant(values["_since"], "_since")[0] if "_since" in values else None
    at = _instant(values["_at"], "_at") if "_at" in values else None
    before = int(signer.decode(values["_cursor"]).get("seq", 0)) if "_cursor" in values else None
    rows = store.history(resource_type, resource_id, since=since, at=at, before_seq=before, count=count + 1)
    has_next = len(rows) > count
    rows = rows[:count]
    path = "/".join(p for p in (base, resource_type, resource_id) if p) + "/_history"
    plain = [(k, v) for k, v in parameters if k != "_cursor"]
    links = [{"relation": "self", "url": page_url(path, parameters)}]
    if has_next and rows:
        cursor = signer.encode({"seq": rows[-1].seq})
        links.append({"relation": "next", "url": page_url(path, [*plain, ("_cursor", cursor)])})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "link": links,
        "entry": [_history_entry(base, row) for row in rows],
    }


def _instant(text: str, parameter: str) -> tuple[int, int]:
    found = date_range(text)
    if found is None:
        raise FhirError(
            400, f"{parameter} must be a FHIR instant or date, not {text!r}", code="invalid", expression=parameter
        )
    return found


def _history_entry(base: str, row: StoredVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{row.reference}"}
    if row.content is not None:
        entry["resource"] = orjson.Fragment(row.content)
    method = row.method or "PUT"
    entry["request"] = {"method": method, "url": row.res_type if method == "POST" else row.reference}
    status = 204 if row.deleted else 201 if row.version == 1 else 200
    entry["response"] = {"status": STATUS_TEXT[status], "etag": row.etag, "lastModified": row.last_modified}
    return entry
