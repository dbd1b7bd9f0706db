"""EUCAIM concepts as data: the ConceptMaps that say what store codes and Focus's values mean.

Three FHIR R4 ConceptMaps are shipped in ``data/conceptmaps`` (sources in ``data/SOURCE.md``):

- ``eucaim-hyperontology``: the store's codes (administrative gender, SNOMED CT and ICD-10 diagnoses,
  DCM modalities, SNOMED CT body sites and lateralities, manufacturer names) -> EUCAIM HyperOntology
  concepts. The one table between what the store holds and EUCAIM.
- ``focus-eucaim-api``: the values Samply Focus sends to the EUCAIM search API, one group per parameter
  (source ``urn:fhir-bridge:eucaim-api:<parameter>``) -> the EUCAIM concept each stands for, which is
  also the Beacon filter id Focus sends for it (``EUCAIM:<code>``).
- ``focus-eucaim-cdm``: EUCAIM concepts -> the code the EUCAIM CDM holds for them where Focus's SQL
  backend looks for another one (``unmatched``: none).

A ConceptMap with the same ``url`` in the store replaces the shipped one (the newest, by lastUpdated,
when there are several), so a site maintains its own mapping as FHIR. Targets marked ``unmatched`` or
``disjoint`` map to nothing. Manufacturer names (``urn:fhir-bridge:Device.manufacturer``) match as FHIR
string search does: a name matches an element when its normalised form starts with the element's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import orjson

from fhir_bridge.errors import FhirError
from fhir_bridge.mapping.conceptmap import targets as _targets
from fhir_bridge.search.query import parse_search
from fhir_bridge.search.runner import search_page
from fhir_bridge.search.values import normalize_string
from fhir_bridge.store.store import Store

EUCAIM = "https://cancerimage.eu/ontology/EUCAIM"
HYPERONTOLOGY = "urn:fhir-bridge:ConceptMap:eucaim-hyperontology"
FOCUS_API = "urn:fhir-bridge:ConceptMap:focus-eucaim-api"
FOCUS_CDM = "urn:fhir-bridge:ConceptMap:focus-eucaim-cdm"
CONCEPT_MAPS = (HYPERONTOLOGY, FOCUS_API, FOCUS_CDM)
API_SYSTEM = "urn:fhir-bridge:eucaim-api:"
MANUFACTURER = "urn:fhir-bridge:Device.manufacturer"
_FILES = {HYPERONTOLOGY: "eucaim-hyperontology", FOCUS_API: "focus-eucaim-api", FOCUS_CDM: "focus-eucaim-cdm"}


@cache
def shipped(url: str) -> dict[str, Any]:
    """The ConceptMap shipped with fhir-bridge for ``url`` (one of ``CONCEPT_MAPS``)."""
    text = files("fhir_bridge.eucaim").joinpath(f"data/conceptmaps/{_FILES[url]}.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Concept:
    """A EUCAIM concept that federated search can ask for: its code, label and search parameter."""

    code: str
    label: str
    parameter: str  # the EUCAIM API parameter (Focus's category): gender, diagnosis, modality, ...

    @property
    def curie(self) -> str:
        return f"EUCAIM:{self.code}"


@dataclass
class Concepts:
    """The effective mapping, built from the three ConceptMaps."""

    meanings: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (system, code) -> EUCAIM codes
    makers: list[tuple[str, str, str]] = field(default_factory=list)  # (normalised name, name, EUCAIM code)
    api: dict[str, dict[str, str]] = field(default_factory=dict)  # parameter -> value -> EUCAIM code
    concepts: dict[str, Concept] = field(default_factory=dict)  # EUCAIM code -> Concept (searchable ones)
    cdm: dict[str, str | None] = field(default_factory=dict)  # EUCAIM code -> CDM code where it differs
    fingerprint: str = ""  # changes whenever the effective ConceptMaps do

    def store_codes(self, concept: str) -> list[tuple[str, str]]:
        """The (system, code) pairs of the store that mean ``concept`` (manufacturer names included)."""
        found = [key for key, targets in self.meanings.items() if concept in targets]
        found += [(MANUFACTURER, name) for _, name, target in self.makers if target == concept]
        return found

    def eucaim(self, system: str | None, code: str | None) -> list[str]:
        """The EUCAIM concepts a coded store value means (none for an unmapped one)."""
        if not system or not code:
            return []
        return self.meanings.get((system, code), [])

    def manufacturer(self, name: str | None) -> list[str]:
        """The EUCAIM concepts of a manufacturer name, matched as FHIR string search matches."""
        if not name:
            return []
        normalised = normalize_string(name)
        return [target for prefix, _, target in self.makers if normalised.startswith(prefix)]

    def in_cdm(self, concept: str | None) -> str | None:
        """The code the EUCAIM CDM holds for ``concept``."""
        if concept is None:
            return None
        return self.cdm.get(concept, concept)

    def filter_concept(self, filter_id: str) -> Concept | None:
        """The concept of a Beacon filter id (``EUCAIM:COM1001366``), None when this node cannot answer it."""
        prefix, _, code = filter_id.partition(":")
        if prefix != "EUCAIM" or not code:
            return None
        return self.concepts.get(code)


def build(maps: dict[str, dict[str, Any]]) -> Concepts:
    """The effective mapping of the three ConceptMaps, keyed by their url."""
    result = Concepts()
    labels: dict[str, str] = {}
    for group in maps[HYPERONTOLOGY].get("group") or []:
        if group.get("target") != EUCAIM or not group.get("source"):
            continue
        for element in group.get("element") or []:
            for target in _targets(element):
                code = target.get("code")
                if not code or not element.get("code"):
                    continue
                labels.setdefault(code, target.get("display") or code)
                if group["source"] == MANUFACTURER:
                    result.makers.append((normalize_string(element["code"]), element["code"], code))
                else:
                    result.meanings.setdefault((group["source"], element["code"]), []).append(code)
    for group in maps[FOCUS_API].get("group") or []:
        source = group.get("source") or ""
        if group.get("target") != EUCAIM or not source.startswith(API_SYSTEM):
            continue
        parameter = source.removeprefix(API_SYSTEM)
        values = result.api.setdefault(parameter, {})
        for element in group.get("element") or []:
            code = next((t.get("code") for t in _targets(element) if t.get("code")), None)
            if code and element.get("code"):
                values[element["code"]] = code
                label = next((t.get("display") for t in _targets(element) if t.get("display")), None)
                result.concepts.setdefault(code, Concept(code, label or labels.get(code, code), parameter))
    for group in maps[FOCUS_CDM].get("group") or []:
        if group.get("source") != EUCAIM or group.get("target") != EUCAIM:
            continue
        for element in group.get("element") or []:
            if element.get("code"):
                result.cdm[element["code"]] = next((t.get("code") for t in _targets(element) if t.get("code")), None)
    result.fingerprint = hashlib.sha256(
        orjson.dumps([maps[url] for url in CONCEPT_MAPS], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return result


class ConceptMaps:
    """The effective Concepts of one store: shipped ConceptMaps unless the store holds one with their url.

    Rebuilt when the store's commit sequence moves (a stored ConceptMap may have changed); thread-safe.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[int, Concepts] | None = None

    def current(self, at_seq: int | None = None) -> Concepts:
        seq = self.store.last_seq() if at_seq is None else at_seq
        with self._lock:
            if self._cached and self._cached[0] == seq:
                return self._cached[1]
            concepts = build({url: self.stored(url, seq) or shipped(url) for url in CONCEPT_MAPS})
            self._cached = (seq, concepts)
            return concepts

    def stored(self, url: str, at_seq: int) -> dict[str, Any] | None:
        """The site's ConceptMap with ``url`` as of ``at_seq`` (the newest one), or None."""
        query = parse_search("ConceptMap", [("url", url), ("_sort", "-_lastUpdated"), ("_count", "1")], strict=True)
        query.at_seq = at_seq
        found = search_page(self.store, query)
        if not found:
            return None
        resource = found[0][0].resource
        if not isinstance(resource, dict) or not isinstance(resource.get("group", []), list):
            raise FhirError(500, f"the site's ConceptMap {url} cannot be read", code="exception")
        return resource
