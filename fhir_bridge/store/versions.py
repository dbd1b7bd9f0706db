"""What the store hands out: a stored version of a resource, and the rules on its content.

These are the store's data types, free of its tables and engines: the layers above (ingest, the
edges) may import this module and nothing else of the store (the import contract checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

STORE_META = ("versionId", "lastUpdated")  # the meta elements the store sets on every version


def format_instant(micros: int) -> str:
    """FHIR ``instant`` text for microseconds since the epoch (UTC, millisecond precision kept)."""
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


_FIELDS = 9  # StoredVersion's fields; store.schema.VERSION_COLUMNS selects them in this order


@dataclass(frozen=True)
class StoredVersion:
    """One version of one resource as stored."""

    res_type: str
    res_id: str
    version: int
    seq: int
    last_updated: int
    deleted: bool
    content: str | None
    method: str = ""
    pk: int | None = None

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> StoredVersion:
        """A version from a row that starts with ``store.schema.VERSION_COLUMNS`` (one per field, in order)."""
        res_type, res_id, version, seq, last_updated, deleted, *rest = row[:_FIELDS]
        return cls(res_type, res_id, version, seq, last_updated, bool(deleted), *rest)  # the driver's 0/1 too

    @property
    def resource(self) -> dict[str, Any] | None:
        return orjson.loads(self.content) if self.content is not None else None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def last_modified(self) -> str:
        return format_instant(self.last_updated)

    @property
    def http_date(self) -> str:
        moment = datetime.fromtimestamp(self.last_updated / 1_000_000, tz=UTC)
        return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

    @property
    def reference(self) -> str:
        return f"{self.res_type}/{self.res_id}"


def version_free_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    """``meta`` without what the store assigns to each version (versionId, lastUpdated)."""
    return {k: v for k, v in (meta or {}).items() if k not in STORE_META}


def version_free(resource: dict[str, Any] | None) -> dict[str, Any]:
    """``resource`` without the meta the store assigns to each version."""
    content = dict(resource or {})
    meta = version_free_meta(content.pop("meta", None))
    if meta:
        content["meta"] = meta
    return content


def same_content(stored: dict[str, Any] | None, resource: dict[str, Any]) -> bool:
    """Equal but for versionId and lastUpdated: storing ``resource`` over ``stored`` would change nothing."""
    return version_free(stored) == version_free(resource)
