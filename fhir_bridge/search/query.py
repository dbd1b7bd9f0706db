"""Parse a FHIR search (R4 search.html) into a ``SearchQuery``: what to match, sort, include, show.

Parameter names resolve against the spec's SearchParameter definitions of the searched type:
``code[:modifier]``, chains ``ref[:Type].code...``, reverse chains ``_has:Type:ref:code``.
What cannot be honoured becomes a warning, or a 400 under ``Prefer: handling=strict``.
SQL is produced elsewhere (``search.compiler``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.errors import FhirError
from fhir_bridge.spec.registry import SearchParameter, patient_compartment, resource_types, search_parameters

# Presentation parameters that the HTTP layer handles.
PRESENTATION_PARAMETERS = frozenset({"_format", "_pretty"})
SUPPORTED_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing", "of-type"},
    "reference": {"missing", "identifier"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}
ROW_SORTS = {"_id", "_lastUpdated"}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
MAX_INCLUDE_ITERATIONS = 4
# Limits so that one query cannot exhaust the server (the first three are settings, these their defaults).
# Each becomes nested SQL: SQLite refuses expressions deeper than 1,000 (about 490 ORed values of one
# parameter, a chain of 4 links), so the defaults stay well below what both databases run.
MAX_CHAIN_DEPTH = 3  # links of a chain or reverse chain: ``subject.organization.name`` has two
MAX_SEARCH_PARAMETERS = 30  # parameters of one search, result parameters included
MAX_OR_VALUES = 100  # comma-separated values of one parameter (ORed), _sort keys and _elements included
# Conditions one chained parameter may expand to: a link without a type modifier stands for every type its
# reference may point to (``Provenance?target.subject.name`` is about 300 links and criteria), each value of
# each criterion counts, and each becomes SQL.
MAX_CHAIN_CONDITIONS = 500


class Unsupported(ValueError):
    """A parameter that this server cannot honour (a warning, or a 400 when strict)."""


@dataclass
class _Budget:
    """What one chained parameter may still cost while it is parsed: links deep, and conditions in all."""

    parameter: str  # the parameter's name as sent, for the error
    max_depth: int = MAX_CHAIN_DEPTH
    conditions: int = MAX_CHAIN_CONDITIONS

    def spend(self, conditions: int = 1) -> None:
        self.conditions -= conditions
        if self.conditions < 0:
            raise FhirError(
                400,
                f"{self.parameter!r} expands to more than {MAX_CHAIN_CONDITIONS} conditions over the types its "
                "references may point to; name the target type of each link (e.g. subject:Patient.name) or send "
                "fewer values",
                code="too-costly",
                expression=self.parameter,
            )


@dataclass(frozen=True)
class Criterion:
    """``code[:modifier]=v1,v2`` on one resource type: the values are ORed."""

    parameter: SearchParameter
    modifier: str | None
    values: tuple[str, ...]


@dataclass(frozen=True)
class Chain:
    """``reference[:Type].rest=values``: resources whose reference points at a match of ``rest``."""

    reference: SearchParameter
    targets: dict[str, Clause]  # target type -> the chained clause on that type


@dataclass(frozen=True)
class ReverseChain:
    """``_has:Source:reference:rest=values``: resources that a matching ``Source`` points at."""

    source_type: str
    reference: SearchParameter
    inner: Clause


@dataclass(frozen=True)
class Compartment:
    """``Patient/[id]/Type``: resources linked to the compartment owner by the spec's parameters."""

    owner_type: str
    owner_id: str


Clause = Criterion | Chain | ReverseChain


@dataclass(frozen=True)
class SortKey:
    name: str
    parameter: SearchParameter | None  # None for _id / _lastUpdated
    descending: bool


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude=...``, optionally ``:iterate``."""

    source_type: str
    parameter: str | None  # None for ``*``: every reference parameter
    target_type: str | None
    reverse: bool
    iterate: bool


@dataclass
class SearchQuery:
    resource_type: str | None
    clauses: list[Clause] = field(default_factory=list)
    count: int = 20
    total: str = "none"
    sort: list[SortKey] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    compartment: Compartment | None = None
    types: tuple[str, ...] = ()  # ``_type`` of a system or compartment search: only these types match
    warnings: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # what the search applied (its self link)
    at_seq: int | None = None  # the commit the search is answered as of (pinned by the first page)
    after: dict[str, Any] | None = None  # the keyset position: last pk and sort values of the previous page


def split_values(raw: str) -> tuple[str, ...]:
    """Split at commas not escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    values, current, escaped = [], [], False
    for char in raw:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return tuple(values)


def parse_count(raw: str, max_count: int) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise FhirError(
            400, f"_count must be a whole number, not {raw!r}", code="invalid", expression="_count"
        ) from None
    if count < 0:
        raise FhirError(400, "_count must not be negative", code="invalid", expression="_count")
    return min(count, max_count)


def _known(resource_type: str | None) -> dict[str, SearchParameter]:
    return search_parameters(resource_type or "Resource")


def _criterion(resource_type: str | None, name: str, raw: str) -> Criterion:
    code, _, modifier = name.partition(":")
    parameter = _known(resource_type).get(code)
    if parameter is None:
        raise Unsupported(f"unknown search parameter {code!r} for {resource_type or 'a system search'}")
    row_parameter = code in ("_id", "_lastUpdated")
    if parameter.type not in SUPPORTED_MODIFIERS or not (parameter.indexed or row_parameter):
        raise Unsupported(f"search parameter {code!r} ({parameter.type}) is not supported")
    type_modifier = parameter.type == "reference" and modifier in resource_types()
    allowed = {"not"} if code == "_id" else set() if row_parameter else SUPPORTED_MODIFIERS[parameter.type]
    if modifier and not type_modifier and modifier not in allowed:
        raise Unsupported(f"modifier :{modifier} is not supported for {code!r}")
    return Criterion(parameter, modifier or None, split_values(raw))


def _reference_targets(parameter: SearchParameter, modifier: str | None) -> tuple[str, ...]:
    if modifier:
        if modifier not in resource_types():
            raise Unsupported(f"{modifier!r} is not a resource type in the chain on {parameter.code!r}")
        return (modifier,)
    return parameter.targets


def _chain(resource_type: str | None, name: str, raw: str, depth: int, budget: _Budget) -> Chain:
    head, _, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    parameter = _known(resource_type).get(code)
    if parameter is None or parameter.type != "reference":
        raise Unsupported(f"{code!r} is not a reference parameter of {resource_type}, so it cannot be chained")
    budget.spend()
    targets: dict[str, Clause] = {}
    problems = []
    for target in _reference_targets(parameter, modifier or None):
        try:
            targets[target] = parse_clause(target, rest, raw, depth + 1, budget)
        except Unsupported as problem:
            problems.append(str(problem))
    if not targets:
        # One reason, not all: nested chains over many types would multiply them into megabytes.
        more = f" (and {len(problems) - 1} more types refused)" if len(problems) > 1 else ""
        raise Unsupported(
            f"the chain {name!r} matches no target type: {problems[0] if problems else 'no targets'}{more}"
        )
    return Chain(parameter, targets)


def _reverse_chain(resource_type: str | None, name: str, raw: str, depth: int, budget: _Budget) -> ReverseChain:
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise Unsupported(f"{name!r} is not of the form _has:Type:reference:parameter")
    _, source_type, reference_code, rest = parts
    if source_type not in resource_types():
        raise Unsupported(f"unknown resource type {source_type!r} in {name!r}")
    reference = search_parameters(source_type).get(reference_code)
    if reference is None or reference.type != "reference":
        raise Unsupported(f"{reference_code!r} is not a reference parameter of {source_type}")
    if resource_type and reference.targets and resource_type not in reference.targets:
        raise Unsupported(f"{source_type}.{reference_code} never refers to {resource_type}")
    budget.spend()
    return ReverseChain(source_type, reference, parse_clause(source_type, rest, raw, depth + 1, budget))


def chain_links(name: str) -> int:
    """The links of a chained or reverse-chained parameter name: ``subject.organization.name`` has two."""
    return name.count(".") + name.count("_has:")


def _too_deep(name: str, max_depth: int) -> FhirError:
    return FhirError(
        400,
        f"{name!r} has {chain_links(name)} links; chains and reverse chains of at most {max_depth} are served",
        code="too-costly",
        expression=name,
    )


def parse_clause(
    resource_type: str | None, name: str, raw: str, depth: int = 0, budget: _Budget | None = None
) -> Clause:
    """One search parameter (possibly chained or reverse-chained) as a clause on ``resource_type``."""
    budget = budget or _Budget(name)
    if depth > budget.max_depth:
        raise _too_deep(budget.parameter, budget.max_depth)
    if name.startswith("_has:"):
        return _reverse_chain(resource_type, name, raw, depth, budget)
    if "." in name:  # parameter codes never hold a dot: it separates the links of a chain
        return _chain(resource_type, name, raw, depth, budget)
    criterion = _criterion(resource_type, name, raw)
    budget.spend(len(criterion.values))
    return criterion


def _sort_keys(resource_type: str | None, raw: str) -> list[SortKey]:
    keys = []
    for part in raw.split(","):
        name = part.strip()
        descending = name.startswith("-")
        name = name.lstrip("-")
        if not name:
            continue
        if name in ROW_SORTS:
            keys.append(SortKey(name, None, descending))
            continue
        parameter = _known(resource_type).get(name)
        if parameter is None or not parameter.indexed or parameter.type == "composite":
            raise Unsupported(f"cannot sort by {name!r}")
        keys.append(SortKey(name, parameter, descending))
    return keys


def _include(resource_type: str | None, name: str, raw: str) -> Include:
    reverse = name.startswith("_revinclude")
    iterate = name.endswith((":iterate", ":recurse"))
    parts = raw.split(":")
    if parts == ["*"]:
        return Include(resource_type or "*", None, None, reverse, iterate)
    if len(parts) not in (2, 3) or parts[0] not in resource_types():
        raise Unsupported(f"{name}={raw!r} is not of the form Type:parameter[:targetType]")
    source, code = parts[0], parts[1]
    if code != "*":
        parameter = search_parameters(source).get(code)
        if parameter is None or parameter.type != "reference":
            raise Unsupported(f"{name}: {code!r} is not a reference parameter of {source}")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in resource_types():
        raise Unsupported(f"{name}: unknown target type {target!r}")
    if not iterate and not reverse and resource_type and source != resource_type:
        raise Unsupported(f"_include={raw} does not start from {resource_type} (add :iterate)")
    return Include(source, None if code == "*" else code, target, reverse, iterate)


def _types(raw: str) -> tuple[str, ...]:
    """``_type`` of a system search (search.html#_type): a 400 for a name that is no resource type, since
    ignoring it would widen the search to every type."""
    names = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in names if t not in resource_types()]
    if unknown or not names:
        raise FhirError(400, f"_type names no resource type: {raw!r}", code="invalid", expression="_type")
    return names


def _control(query: SearchQuery, name: str, raw: str, max_count: int) -> bool:
    """Apply a result parameter; False when ``name`` is not one."""
    if name == "_count":
        query.count = parse_count(raw, max_count)
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise FhirError(
                400, f"_total must be none, estimate or accurate, not {raw!r}", code="invalid", expression=name
            )
        query.total = raw
    elif name == "_summary":
        if raw not in SUMMARY_MODES:
            raise FhirError(400, f"_summary must be one of {', '.join(SUMMARY_MODES)}", code="invalid", expression=name)
        query.summary = None if raw == "false" else raw
    elif name == "_elements":
        query.elements = tuple(e.strip() for e in raw.split(",") if e.strip())
    elif name == "_sort":
        query.sort = _sort_keys(query.resource_type, raw)
    elif name.split(":")[0] in ("_include", "_revinclude"):
        query.includes.append(_include(query.resource_type, name, raw))
    elif name == "_type" and query.resource_type is None:
        query.types = _types(raw)
    else:
        return False
    return True


def parse_search(
    resource_type: str | None,
    parameters: list[tuple[str, str]],
    *,
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 1000,
    compartment: Compartment | None = None,
    max_chain_depth: int = MAX_CHAIN_DEPTH,
    max_parameters: int = MAX_SEARCH_PARAMETERS,
    max_or_values: int = MAX_OR_VALUES,
) -> SearchQuery:
    """Build a SearchQuery; unknown parameters are warnings, or errors when ``strict``.

    Beyond the limits (parameters, comma-separated values of one, links of a chain) the search is a 400
    ``too-costly`` whatever the handling: ignoring such a parameter would answer a different search.
    """
    query = SearchQuery(resource_type=resource_type, count=default_count, compartment=compartment)
    if compartment and resource_type and not patient_compartment().get(resource_type):
        raise FhirError(400, f"{resource_type} is not in the {compartment.owner_type} compartment", code="invalid")
    _check_limits(parameters, max_chain_depth, max_parameters, max_or_values)
    for name, raw in parameters:
        if name in PRESENTATION_PARAMETERS:
            continue
        try:
            if not _control(query, name, raw, max_count):
                query.clauses.append(parse_clause(resource_type, name, raw, budget=_Budget(name, max_chain_depth)))
            elif name == "_count":  # the self link says what was applied: a larger _count is capped
                raw = str(query.count)
        except Unsupported as problem:
            if strict:
                raise FhirError(400, str(problem), code="not-supported", expression=name) from None
            query.warnings.append(f"{problem}; ignored")
            continue
        query.used.append((name, raw))
    return query


def _check_limits(parameters: list[tuple[str, str]], max_depth: int, max_parameters: int, max_values: int) -> None:
    """400 ``too-costly`` for a search beyond the limits, before any of it is parsed."""
    counted = [(name, raw) for name, raw in parameters if name not in PRESENTATION_PARAMETERS]
    if len(counted) > max_parameters:
        raise FhirError(
            400,
            f"the search has {len(counted)} parameters; at most {max_parameters} are served in one request",
            code="too-costly",
        )
    for name, raw in counted:
        if "\x00" in name or "\x00" in raw:  # never stored (FHIR strings cannot hold it; PostgreSQL refuses it)
            raise FhirError(
                400, f"the search parameter {name!r} holds a NUL character", code="invalid", expression=name
            )
        values = raw.count(",") + 1  # an upper bound: escaped commas (\\,) are counted too
        if values > max_values and len(split_values(raw)) > max_values:
            raise FhirError(
                400,
                f"{name} has {len(split_values(raw))} comma-separated values; at most {max_values} are served",
                code="too-costly",
                expression=name,
            )
        if chain_links(name) > max_depth:
            raise _too_deep(name, max_depth)
