"""The catalogue service: the cached description in several RDF syntaxes, and federated counts.

The statistics behind a description are cached on the store's last sequence number: while the
store does not change, every request is served from memory. While it changes (an ingest running),
a description up to ``cache_seconds`` old is served, so that catalogue polling during an ingest
costs at most one recomputation per period rather than one per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_bridge.catalogue.config import CatalogueConfig
from fhir_bridge.catalogue.dcat import PREFIXES, DescriptionBuilder, Location
from fhir_bridge.catalogue.disclosure import disclosed
from fhir_bridge.catalogue.statistics import Criterion, Statistics, StoreStatistics
from fhir_bridge.store.store import Store

# media type -> rdflib format name, in the order preferred when a client accepts several
SYNTAXES = {
    "application/ld+json": "json-ld",
    "text/turtle": "turtle",
    "application/rdf+xml": "xml",
    "application/n-triples": "nt",
}
_RENDERED_KEPT = 16
JSONLD_CONTEXT = {prefix: str(namespace) for prefix, namespace in PREFIXES.items()}


@dataclass(frozen=True)
class _Cached:
    built: float  # time.monotonic()
    statistics: StoreStatistics


class Catalogue:
    """Describes one store; thread-safe (FastAPI runs sync routes on a thread pool)."""

    def __init__(self, store: Store, config: CatalogueConfig, threshold: int, cache_seconds: float) -> None:
        self.store = store
        self.threshold = threshold
        self.cache_seconds = cache_seconds
        self.builder = DescriptionBuilder(config, threshold)
        self.statistics = Statistics(store)
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._rendered: dict[tuple[int, Location, str], bytes] = {}

    def current_statistics(self) -> StoreStatistics:
        seq = self.store.last_seq()
        with self._lock:  # one recomputation at a time; the others wait for it and reuse it
            cached = self._cached
            if cached and (cached.statistics.seq == seq or time.monotonic() - cached.built < self.cache_seconds):
                return cached.statistics
            statistics = self.statistics.collect()
            self._cached = _Cached(time.monotonic(), statistics)
            self._rendered.clear()
            return statistics

    def invalidate(self) -> None:
        """Forget the cached statistics: after an erasure the description must change at once, not
        ``cache_seconds`` later."""
        with self._lock:
            self._cached = None
            self._rendered.clear()

    def describe(self, where: Location, media_type: str) -> bytes:
        """The description serialised as ``media_type`` (a key of ``SYNTAXES``)."""
        statistics = self.current_statistics()
        key = (statistics.seq, where, media_type)
        rendered = self._rendered.get(key)
        if rendered is None:
            graph = self.builder.build(statistics, where)
            syntax = SYNTAXES[media_type]
            if syntax == "json-ld":
                rendered = graph.serialize(format="json-ld", context=JSONLD_CONTEXT, indent=2, encoding="utf-8")
            else:
                rendered = graph.serialize(format=syntax, encoding="utf-8")
            with self._lock:
                if len(self._rendered) >= _RENDERED_KEPT:
                    self._rendered.clear()
                self._rendered[key] = rendered
        return rendered

    def counts(self, criteria: Sequence[Criterion], stratify: str | None) -> dict[str, Any]:
        """Subjects and studies meeting ``criteria``; both null when fewer than the threshold of subjects."""
        subjects, studies, strata = self.statistics.counts(criteria, stratify)
        answer: dict[str, Any] = {"threshold": self.threshold, **self._published(subjects, studies)}
        if stratify:
            answer["stratifier"] = stratify
            answer["strata"] = [
                {
                    "value": f"{s.value.system}|{s.value.code}" if s.value.system else s.value.code,
                    "system": s.value.system,
                    "code": s.value.code,
                    "subjects": s.subjects,
                    "studies": s.studies,
                }
                for s in sorted(strata, key=lambda s: (-s.subjects, s.value.system or "", s.value.code))
                if disclosed(s.subjects, self.threshold) is not None
            ]
        return answer

    def _published(self, subjects: int, studies: int) -> dict[str, int | None]:
        if disclosed(subjects, self.threshold) is None:
            return {"subjects": None, "studies": None}
        return {"subjects": subjects, "studies": studies}
