"""Merging what a push brings into what is stored: ImagingStudy unions, and fill-in for other resources.

``StudyMerge`` folds ImagingStudy resources together: the union of their series and instances,
with counts recomputed.
The result does not depend on the order in which parts arrive: series and instances are keyed by
UID and sorted by (number, UID); counts and the modality list are derived from what is there; a
field already set is never overwritten (the first sender's value stays), a missing one is filled.
Re-adding what is already there yields an identical resource, so a re-push makes no new version.
``fill_missing`` does the same for a Patient, Device or Endpoint: what is stored wins, gaps are filled,
so data another path added (e.g. the clinical records) is never overwritten by a DICOM push.
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_bridge.store.versions import version_free_meta

_DERIVED = {"numberOfSeries", "numberOfInstances", "modality", "series"}
_UNIONS = {"identifier", "endpoint", "procedureCode", "reasonCode"}


def _add_unique(target: list[Any], items: list[Any]) -> None:
    for item in items:
        if item not in target:
            target.append(item)


def fill_missing(current: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``current`` with the top-level fields it lacks taken from ``new`` (security labels are united)."""
    if current is None:
        return copy.deepcopy(new)
    result = {k: copy.deepcopy(v) for k, v in current.items() if k != "meta"}
    for key, value in new.items():
        if key != "meta":
            result.setdefault(key, copy.deepcopy(value))
    meta = version_free_meta(current.get("meta"))
    security = list(meta.get("security", []))
    _add_unique(security, (new.get("meta") or {}).get("security", []))
    if security:
        meta["security"] = security
    if meta:
        result["meta"] = meta
    return result


def _order(item: dict[str, Any]) -> tuple[bool, int, str]:
    number = item.get("number")
    return (number is None, number if isinstance(number, int) else 0, str(item.get("uid", "")))


class _Series:
    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.lists: dict[str, list[Any]] = {"endpoint": [], "performer": []}
        self.instances: dict[str, dict[str, Any]] = {}

    def add(self, series: dict[str, Any]) -> None:
        for key, value in series.items():
            if key in self.lists:
                _add_unique(self.lists[key], value)
            elif key == "instance":
                for instance in value:
                    known = self.instances.get(instance["uid"])
                    if known is None:
                        self.instances[instance["uid"]] = dict(instance)
                    else:
                        for field, part in instance.items():
                            known.setdefault(field, part)
            elif key != "numberOfInstances":
                self.fields.setdefault(key, value)

    def result(self) -> dict[str, Any]:
        series = dict(self.fields)
        series.update({key: list(items) for key, items in self.lists.items() if items})
        series["numberOfInstances"] = len(self.instances)
        series["instance"] = sorted(self.instances.values(), key=_order)
        return series


class StudyMerge:
    """Accumulates ImagingStudy resources of one study; ``result()`` is their union.

    The resources added are taken over, not copied (they are built or parsed for this merge alone):
    do not use them afterwards.
    """

    def __init__(self, base: dict[str, Any] | None = None) -> None:
        self.fields: dict[str, Any] = {}
        self.lists: dict[str, list[Any]] = {key: [] for key in _UNIONS}
        self.meta: dict[str, Any] = {}
        self.security: list[dict[str, Any]] = []
        self.series: dict[str, _Series] = {}
        self.conflicting_subject = False
        if base is not None:
            self.add(base)

    def add(self, study: dict[str, Any]) -> bool:
        """Fold ``study`` in; False when it names another subject than the one kept (the first)."""
        agrees = "subject" not in study or "subject" not in self.fields or study["subject"] == self.fields["subject"]
        for key, value in study.items():
            if key == "meta":
                meta = version_free_meta(value)
                _add_unique(self.security, meta.pop("security", []))
                for name, part in meta.items():
                    self.meta.setdefault(name, part)
            elif key in self.lists:
                _add_unique(self.lists[key], value)
            elif key == "series":
                for series in value:
                    self.series.setdefault(series["uid"], _Series()).add(series)
            elif key not in _DERIVED:
                self.fields.setdefault(key, value)
        return agrees

    @property
    def instance_count(self) -> int:
        return sum(len(series.instances) for series in self.series.values())

    def result(self) -> dict[str, Any]:
        study = dict(self.fields)
        meta = dict(self.meta)
        if self.security:
            meta["security"] = list(self.security)
        if meta:
            study["meta"] = meta
        study.update({key: list(items) for key, items in self.lists.items() if items})
        series = sorted((s.result() for s in self.series.values()), key=_order)
        modalities: list[dict[str, Any]] = []
        _add_unique(modalities, [s["modality"] for s in series if "modality" in s])
        if modalities:
            study["modality"] = sorted(modalities, key=lambda coding: (coding.get("system", ""), coding["code"]))
        study["numberOfSeries"] = len(series)
        study["numberOfInstances"] = sum(s["numberOfInstances"] for s in series)
        if series:
            study["series"] = series
        return study
