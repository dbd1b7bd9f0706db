"""Turn a resource into index entries, one typed table per search parameter type.

Which elements are indexed, and as which type, comes from the spec's SearchParameter
definitions (``spec.registry``); this module only knows how each FHIR data type becomes a
token, string, date, number, quantity, reference or uri entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from fhir_bridge.search.values import MAX_INSTANT, MIN_INSTANT, date_range, normalize_string, number_range
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter, search_parameters

MAX_INDEXED_STRING = 255

Entry = dict[str, Any]
IndexEntries = dict[str, list[Entry]]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # HumanName, Address, ...: every textual part is searchable
        for key, part in value.items():
            if key not in ("use", "period", "extension", "id", "type"):
                yield from _strings(part)
    elif isinstance(value, list):
        for part in value:
            yield from _strings(part)


def _string_entries(item: Item) -> Iterator[Entry]:
    for text in _strings(item.value):
        yield {"value": normalize_string(text)[:MAX_INDEXED_STRING], "exact": text[:MAX_INDEXED_STRING]}


def _coding_entry(coding: dict[str, Any], text: str | None = None) -> Entry:
    display = text or coding.get("display")
    return {
        "system": coding.get("system"),
        "code": coding.get("code"),
        "text": normalize_string(display)[:MAX_INDEXED_STRING] if display else None,
    }


def _token_entries(item: Item) -> Iterator[Entry]:
    value = item.value
    if isinstance(value, bool):
        yield {"system": None, "code": "true" if value else "false", "text": None}
    elif isinstance(value, str | int | float):
        yield {"system": None, "code": str(value), "text": None}
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            for coding in value.get("coding", []):
                yield _coding_entry(coding, value.get("text"))
            if not value.get("coding") and value.get("text"):
                yield {"system": None, "code": None, "text": normalize_string(value["text"])[:MAX_INDEXED_STRING]}
        elif "value" in value and "code" not in value:  # Identifier, ContactPoint
            kind = value.get("type") if isinstance(value.get("type"), dict) else {}
            text = normalize_string(kind["text"])[:MAX_INDEXED_STRING] if kind.get("text") else None
            entry = {"system": value.get("system"), "code": str(value["value"]), "text": text}
            for coding in kind.get("coding") or [{}]:  # one row per Identifier.type coding, for :of-type
                yield entry | {"type_system": coding.get("system"), "type_code": coding.get("code")}
        elif "code" in value or "system" in value:  # Coding
            yield _coding_entry(value)


def _date_entries(item: Item) -> Iterator[Entry]:
    value = item.value
    if isinstance(value, str):
        found = date_range(value)
        if found:
            yield {"low": found[0], "high": found[1]}
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period: open ends are unbounded
            start = date_range(value["start"]) if "start" in value else None
            end = date_range(value["end"]) if "end" in value else None
            if start or end:
                yield {"low": start[0] if start else MIN_INSTANT, "high": end[1] if end else MAX_INSTANT}
        for event in value.get("event", []):  # Timing
            yield from _date_entries(Item(event))
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if bounds:
            yield from _date_entries(Item(bounds))


def _number_entries(item: Item) -> Iterator[Entry]:
    found = number_range(item.value) if not isinstance(item.value, dict | list | bool) else None
    if found:
        yield {"value": found[0], "low": found[1], "high": found[2]}


def _quantity_entries(item: Item) -> Iterator[Entry]:
    value = item.value
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:  # Range
        low = number_range(value.get("low", {}).get("value")) if "low" in value else None
        high = number_range(value.get("high", {}).get("value")) if "high" in value else None
        unit = value.get("low") or value.get("high") or {}
        yield {
            "system": unit.get("system"),
            "code": unit.get("code") or unit.get("unit"),
            "value": None,
            "low": low[1] if low else None,
            "high": high[2] if high else None,
        }
        return
    found = number_range(value.get("value")) if "value" in value else None
    if found:
        yield {
            "system": value.get("system"),
            "code": value.get("code") or value.get("unit") or value.get("currency"),
            "value": found[0],
            "low": found[1],
            "high": found[2],
        }


def parse_reference(text: str) -> tuple[str | None, str | None]:
    """(type, id) of a relative or absolute literal reference; (None, None) for others."""
    path = text.split("?")[0]
    if path.startswith(("#", "urn:")):
        return None, None
    parts = path.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, None


def _reference_entries(item: Item) -> Iterator[Entry]:
    value = item.value
    text = value.get("reference") if isinstance(value, dict) else value if isinstance(value, str) else None
    identifier = value.get("identifier") if isinstance(value, dict) else None
    if text is None and not identifier:
        return
    target_type, target_id = parse_reference(text) if text else (None, None)
    if isinstance(value, dict) and target_type is None:
        target_type = value.get("type")
    yield {
        "target_type": target_type,
        "target_id": target_id,
        "url": text if text and (target_id is None or "://" in text) else None,
        "identifier_system": identifier.get("system") if identifier else None,
        "identifier_value": identifier.get("value") if identifier else None,
    }


def _uri_entries(item: Item) -> Iterator[Entry]:
    if isinstance(item.value, str):
        yield {"uri": item.value}


def _composite_entries(item: Item, parameter: SearchParameter) -> Iterator[Entry]:
    """Pairs of (token, second component) found within one element, e.g. one Observation.component."""
    (_, first), (second_type, second) = parameter.components
    tokens = [e for found in first([item]) for e in _token_entries(found)]
    seconds = [e for found in second([item]) for e in EXTRACTORS[second_type](found)]
    for token in tokens:
        for other in seconds:
            entry = {"c1_system": token["system"], "c1_code": token["code"]}
            if second_type == "token":
                entry |= {"c2_system": other["system"], "c2_code": other["code"]}
            elif second_type == "string":
                entry |= {"c2_text": other["value"]}
            elif second_type == "reference":
                entry |= {"c2_code": other["target_type"], "c2_text": other["target_id"] or other["url"]}
            elif second_type == "quantity":
                low = other["value"] if other["value"] is not None else other["low"]
                high = other["value"] if other["value"] is not None else other["high"]
                entry |= {"c2_system": other["system"], "c2_code": other["code"], "c2_low": low, "c2_high": high}
            else:  # date
                entry |= {"c2_low": float(other["low"]), "c2_high": float(other["high"])}
            yield entry


EXTRACTORS = {
    "string": _string_entries,
    "token": _token_entries,
    "date": _date_entries,
    "number": _number_entries,
    "quantity": _quantity_entries,
    "reference": _reference_entries,
    "uri": _uri_entries,
}
# Every row of a table carries every column (one executemany per table).
COLUMN_DEFAULTS: dict[str, Entry] = {
    "token": {"text": None, "type_system": None, "type_code": None},
    "composite": {"c2_system": None, "c2_code": None, "c2_text": None, "c2_low": None, "c2_high": None},
}


@cache
def _indexed_parameters(resource_type: str) -> tuple[SearchParameter, ...]:
    return tuple(p for p in search_parameters(resource_type).values() if p.indexed)


def index_entries(resource: dict[str, Any]) -> IndexEntries:
    """Index entries of ``resource`` by table (search parameter type), each naming its parameter."""
    result: IndexEntries = {kind: [] for kind in [*EXTRACTORS, "composite"]}
    root = [Item(resource)]
    for parameter in _indexed_parameters(resource["resourceType"]):
        found = parameter.evaluate(root)  # type: ignore[misc]
        if not found:
            continue
        defaults = COLUMN_DEFAULTS.get(parameter.type, {})
        seen: set[tuple] = set()
        rows = result[parameter.type]
        for item in found:
            if parameter.type == "composite":
                entries = _composite_entries(item, parameter)
            else:
                entries = EXTRACTORS[parameter.type](item)
            for entry in entries:
                row = defaults | entry
                key = tuple(row.values())
                if key not in seen:
                    seen.add(key)
                    row["param"] = parameter.code
                    rows.append(row)
    return result
