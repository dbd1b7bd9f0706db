"""The index rows of a resource: what the store writes to its typed index tables with each version.

Which elements are indexed, and as which type, comes from the spec's SearchParameter definitions
(``spec.registry``); how each found element becomes rows is its type module's ``entries``
(``search.parameter_types``). The composition root hands ``index_entries`` to the store, which
calls it on every version it writes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_bridge.search.parameter_types import PARAMETER_TYPES
from fhir_bridge.search.parameter_types.protocol import Entry
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter, search_parameters

IndexEntries = dict[str, list[Entry]]


@cache
def _indexed_parameters(resource_type: str) -> tuple[SearchParameter, ...]:
    return tuple(p for p in search_parameters(resource_type).values() if p.indexed)


def index_entries(resource: dict[str, Any]) -> IndexEntries:
    """Index entries of ``resource`` by table (search parameter type), each naming its parameter.

    A value found twice (the same coding in two places) gives one row.
    """
    result: IndexEntries = {kind: [] for kind in PARAMETER_TYPES}
    root = [Item(resource)]
    for parameter in _indexed_parameters(resource["resourceType"]):
        found = parameter.evaluate(root)  # type: ignore[misc]
        if not found:
            continue
        kind = PARAMETER_TYPES[parameter.type]
        seen: set[tuple[Any, ...]] = set()
        rows = result[parameter.type]
        for item in found:
            for entry in kind.entries(item, parameter):
                row = kind.COLUMN_DEFAULTS | entry
                key = tuple(row.values())
                if key not in seen:
                    seen.add(key)
                    row["param"] = parameter.code
                    rows.append(row)
    return result
