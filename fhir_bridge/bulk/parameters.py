"""Read and check the kick-off parameters of ``$export`` (Bulk Data Access IG v2) synchronously.

Everything that can be wrong with a request is found here, before the job exists, so that a
client gets a 400 OperationOutcome at kick-off instead of a failed job later. Parameters this
server does not support are refused, unless the client sent ``Prefer: handling=lenient``: then
they are ignored, and said so in the manifest's ``error`` files, as the IG allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from urllib.parse import parse_qsl

from fhir_bridge.errors import FhirError
from fhir_bridge.search.compiler import compile_search
from fhir_bridge.search.query import SearchQuery, parse_search
from fhir_bridge.search.values import date_range
from fhir_bridge.spec.registry import patient_compartment, resource_types

from .model import ExportRequest

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
IGNORED = frozenset({"_format", "_pretty"})  # presentation parameters of the REST API
MAX_PATIENTS = 10_000  # ``patient`` values one kick-off may name
# A _typeFilter value may hold several queries separated by commas; a comma that starts the
# next query is followed by "Type?" (commas inside a query's values are not).
_FILTER_SPLIT = re.compile(r",(?=\s*[A-Z][A-Za-z]*\?)")


@cache
def compartment_types() -> frozenset[str]:
    """Types a Patient or Group export covers: the Patient compartment's members, and Patient."""
    links = patient_compartment()
    return frozenset({t for t, params in links.items() if any(p != "{def}" for p in params)} | {"Patient"})


class _Reader:
    """Collects the request while checking it; ``refuse`` is a 400, or a warning when lenient."""

    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self.warnings: list[str] = []

    def refuse(self, message: str, parameter: str, code: str = "not-supported") -> None:
        if not self.lenient:
            raise FhirError(400, message, code=code, expression=parameter)
        self.warnings.append(f"{message}; ignored (Prefer: handling=lenient)")


def _since(raw: str) -> int:
    # an unencoded "+01:00" in a query string arrives as " 01:00"
    found = date_range(raw.strip().replace(" ", "+"))
    if found is None:
        raise FhirError(400, f"_since must be a FHIR instant, not {raw!r}", code="invalid", expression="_since")
    return found[0]


def _types(values: list[str], allowed: frozenset[str], level: str, reader: _Reader) -> tuple[str, ...]:
    wanted: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name or name in wanted:
                continue
            if name not in resource_types():
                reader.refuse(f"_type: {name!r} is not a FHIR R4 resource type", "_type")
            elif name not in allowed:
                reader.refuse(f"_type: {name} is not in the Patient compartment, so a {level} export has none", "_type")
            else:
                wanted.append(name)
    return tuple(wanted)


def filter_query(resource_type: str, query_string: str, *, strict: bool) -> SearchQuery:
    """The search a ``_typeFilter`` query stands for; only search criteria are allowed in it."""
    query = parse_search(resource_type, parse_qsl(query_string, keep_blank_values=True), strict=strict)
    used = {name.split(":")[0] for name, _ in query.used}
    result_parameters = used & {"_count", "_total", "_summary", "_elements", "_sort", "_include", "_revinclude"}
    if result_parameters:
        raise FhirError(
            400,
            f"_typeFilter {resource_type}?{query_string} holds {', '.join(sorted(result_parameters))}: "
            "only search criteria may be used",
            code="invalid",
            expression="_typeFilter",
        )
    return query


def _type_filters(values: list[str], types: tuple[str, ...], reader: _Reader) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for value in values:
        for text in (part.strip() for part in _FILTER_SPLIT.split(value)):
            if not text:
                continue
            resource_type, question, query_string = text.partition("?")
            if not question or resource_type not in resource_types():
                raise FhirError(
                    400, f"_typeFilter {text!r} is not of the form Type?query", code="invalid", expression="_typeFilter"
                )
            if resource_type not in types:
                reader.refuse(f"_typeFilter {text!r}: {resource_type} is not exported by this request", "_typeFilter")
                continue
            query = filter_query(resource_type, query_string, strict=not reader.lenient)
            reader.warnings.extend(f"_typeFilter {text!r}: {warning}" for warning in query.warnings)
            query.at_seq = 0
            compile_search(query)  # finds malformed values (dates, numbers, ...) now: a 400 at kick-off
            filters.setdefault(resource_type, []).append(query_string)
    return filters


def _patients(values: list[str]) -> tuple[str, ...]:
    ids: list[str] = []
    for value in values:
        for reference in (part.strip() for part in value.split(",")):
            kind, slash, patient_id = reference.rpartition("/")
            if not reference or (slash and kind.rsplit("/", 1)[-1] != "Patient") or not patient_id:
                raise FhirError(
                    400, f"patient: {reference!r} is not a Patient reference", code="invalid", expression="patient"
                )
            if patient_id not in ids:
                ids.append(patient_id)
    if len(ids) > MAX_PATIENTS:
        raise FhirError(400, f"patient: at most {MAX_PATIENTS} patients per export", code="too-costly")
    return tuple(ids)


def read_export_request(
    level: str, parameters: Iterable[tuple[str, str]], *, lenient: bool, group_id: str | None = None
) -> ExportRequest:
    """The export a kick-off asks for, or a ``FhirError`` (400) saying what is wrong with it."""
    reader = _Reader(lenient)
    values: dict[str, list[str]] = {}
    for name, value in parameters:
        if name in IGNORED:
            continue
        if name in ("_type", "_typeFilter", "_since", "_outputFormat") or (name == "patient" and level != "system"):
            values.setdefault(name, []).append(value)
        else:
            reader.refuse(f"the $export parameter {name!r} is not supported by this server", name)
    output_format = (values.get("_outputFormat") or ["application/fhir+ndjson"])[-1].strip()
    if output_format not in OUTPUT_FORMATS:
        raise FhirError(
            400,
            f"_outputFormat {output_format!r} is not supported: use {', '.join(OUTPUT_FORMATS)}",
            code="not-supported",
            expression="_outputFormat",
        )
    allowed = resource_types() if level == "system" else compartment_types()
    types = _types(values["_type"], allowed, level, reader) if "_type" in values else tuple(sorted(allowed))
    since = _since(values["_since"][-1]) if "_since" in values else None
    filters = _type_filters(values.get("_typeFilter", []), types, reader)
    return ExportRequest(
        level=level,
        types=types,
        since=since,
        type_filters=filters,
        group_id=group_id,
        patients=_patients(values.get("patient", [])),
        output_format=output_format,
        warnings=tuple(reader.warnings),
    )
