"""The ``history`` interactions (instance, type, system): a Bundle of versions, newest first, paged by seq.

The first page pins the history to the newest commit (``top``); every later page, and the ``first``,
``previous``, ``next`` and ``last`` links (http.html#history, bundle.html#paging), carry it in their
signed cursor, so ``total`` and the pages agree however much is written while a client pages. The
total and the last page's position are worked out on the first page and carried in the cursor too,
so a later page costs its own query and, for ``previous``, one indexed query on ``seq``.
"""

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


class _Pages:
    """The versions a history selects, as of commit ``top``: what each page and link needs."""

    def __init__(
        self,
        store: Store,
        resource_type: str | None,
        resource_id: str | None,
        since: int | None,
        at: tuple[int, int] | None,
        top: int,
    ) -> None:
        self.store = store
        self.scope = (resource_type, resource_id)
        self.since = since
        self.at = at
        self.top = top

    def newest(self, before: int, count: int) -> list[StoredVersion]:
        """Up to ``count`` versions below seq ``before``, newest first."""
        return self.store.history(*self.scope, since=self.since, at=self.at, before_seq=before, count=count)

    def oldest(self, after: int, count: int) -> list[StoredVersion]:
        """Up to ``count`` versions above seq ``after`` (up to ``top``), oldest first."""
        return self.store.history(
            *self.scope,
            since=self.since,
            at=self.at,
            after_seq=after,
            before_seq=self.top + 1,
            count=count,
            oldest_first=True,
        )

    def total(self) -> int:
        return self.store.count_history(*self.scope, self.since, at=self.at, up_to_seq=self.top)


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
    position = signer.decode(values["_cursor"]) if "_cursor" in values else {}
    top = int(position["top"]) if "top" in position else store.last_seq()
    before = int(position.get("seq", top + 1))
    pages = _Pages(store, resource_type, resource_id, since, at, top)
    rows = pages.newest(before, count + 1)
    has_next = len(rows) > count
    rows = rows[:count]
    # counted once, on the first page: the later pages carry the total (and the last page's position)
    total = int(position["total"]) if "total" in position else pages.total()
    path = "/".join(p for p in (base, resource_type, resource_id) if p) + "/_history"
    plain = [(k, v) for k, v in parameters if k != "_cursor"]
    pinned = {"top": top, "total": total}
    if count and total > count:
        last_page = pages.oldest(0, total % count or count) if "last" not in position else []
        pinned["last"] = int(position["last"]) if "last" in position else last_page[-1].seq + 1

    def link(relation: str, before_seq: int) -> dict[str, str]:
        cursor = signer.encode({"seq": before_seq, **pinned})
        return {"relation": relation, "url": page_url(path, [*plain, ("_cursor", cursor)])}

    links = [{"relation": "self", "url": page_url(path, parameters)}]
    if "last" in pinned:
        links.append(link("first", top + 1))
        newer = pages.oldest(rows[0].seq if rows else before - 1, count) if before <= top else []
        if newer:
            links.append(link("previous", newer[-1].seq + 1))
        if has_next and rows:
            links.append(link("next", rows[-1].seq))
        links.append(link("last", pinned["last"]))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "total": total,
        "link": links,
    }
    if rows:  # json.html: no empty arrays
        bundle["entry"] = [_history_entry(base, row) for row in rows]
    return bundle


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
