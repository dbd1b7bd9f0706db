"""Evaluating a mapping's templates against one source record.

A template is FHIR JSON in which some objects are expressions (``$field``, ``$concat``, ``$coalesce``,
``$reference``, ``$lookup``). An element built from fields disappears when none of its fields has
a value, so an empty ``grade`` column leaves no half-empty Coding behind. Problems of the record
(a required field empty, a date no format reads, a code the value map lacks) are collected, not
raised: the record's report lists all of them, each with its column.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fhir_bridge.mapping.clinical.dates import DATE_TYPES, DateProblem, to_fhir


class _Missing:
    """Nothing: the value of an expression whose fields are empty (never written to a resource)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_TRUE = frozenset({"true", "t", "yes", "y", "1", "ja", "oui", "si", "sí"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "nein", "non"})
_INDEX = re.compile(r"\[(\d+)\]")
_BOUNDARY = re.compile(r"[.\[]")


@dataclass(frozen=True)
class FieldError:
    """One problem of a record: the column (or field path) and why."""

    column: str | None
    reason: str


class Translation(Protocol):
    """A ConceptMap's ``$translate`` (see ``mapping.conceptmap``)."""

    def translate(self, system: str | None, code: str, target: str | None) -> list[dict[str, Any]]: ...


class Privacy(Protocol):
    """What templates need of the privacy policy (see ``mapper.RecordPrivacy``)."""

    def deidentify(self, keyword: str, value: str) -> str | None: ...

    def keyed_hash(self, domain: str, value: str) -> str: ...


@dataclass
class PendingLookup:
    """A reference to a stored resource, found in the write transaction (``reference`` is filled then)."""

    resource_type: str
    criteria: list[tuple[str, str]]  # (search parameter, value), tried in order
    optional: bool
    column: str | None
    reference: dict[str, Any]


@dataclass
class Context:
    """One record's evaluation: its data, the references it can make, and what went wrong."""

    record: dict[str, Any]
    privacy: Privacy
    zone: ZoneInfo | None
    targets: dict[str, str | list[str]] = field(default_factory=dict)  # local name -> "Type/id" (a list: forEach)
    references: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "Type/id" -> Reference objects
    lookups: list[PendingLookup] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # output path -> column it came from
    translations: dict[str, Translation] = field(default_factory=dict)  # ConceptMap url -> its $translate

    def fail(self, column: str | None, reason: str) -> Any:
        error = FieldError(column, reason)
        if error not in self.errors:  # one message per problem, however many elements read the column
            self.errors.append(error)
        return MISSING


def resolve(record: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a column name or a path ``a.b[0].c`` into nested JSON.

    A step into an object takes the longest key the rest of the path starts with, so keys that hold
    dots or brackets themselves (HL7 positions: ``OBX[0].OBX-5.2``, ``PID-3[1].4.1``) are reached.
    """
    if path in record:
        return True, record[path]
    return _walk(record, path)


def _walk(current: Any, rest: str) -> tuple[bool, Any]:
    if not rest:
        return True, current
    if isinstance(current, list):
        match = _INDEX.match(rest)
        if match is None or int(match.group(1)) >= len(current):
            return False, None
        return _walk(current[int(match.group(1))], rest[match.end() :].removeprefix("."))
    if not isinstance(current, dict):
        return False, None
    ends = [m.start() for m in _BOUNDARY.finditer(rest)] + [len(rest)]
    for end in reversed(ends):  # the longest key first
        key = rest[:end]
        if key and key in current:
            found, value = _walk(current[key], rest[end:].removeprefix("."))
            if found:
                return found, value
    return False, None


def as_text(value: Any) -> str | None:
    """A source value as text: strings trimmed, numbers and booleans as JSON writes them; None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


# conditions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """``field`` with one test (present, equals, in, matches), or all / any / not of conditions."""

    field: str | None = None
    present: bool | None = None
    equals: str | None = None
    among: frozenset[str] | None = None
    matches: re.Pattern[str] | None = None
    every: tuple[Condition, ...] = ()
    some: tuple[Condition, ...] = ()
    negated: Condition | None = None

    def holds(self, record: dict[str, Any]) -> bool:
        if self.every and not all(c.holds(record) for c in self.every):
            return False
        if self.some and not any(c.holds(record) for c in self.some):
            return False
        if self.negated is not None and self.negated.holds(record):
            return False
        if self.field is None:
            return True
        text = as_text(resolve(record, self.field)[1])
        if self.present is not None and (text is not None) != self.present:
            return False
        if self.equals is not None and text != self.equals:
            return False
        if self.among is not None and text not in self.among:
            return False
        if self.matches is not None and (text is None or not self.matches.fullmatch(text)):
            return False
        if self.present is None and self.equals is None and self.among is None and self.matches is None:
            return text is not None  # a bare field: it has a value
        return True


# nodes --------------------------------------------------------------------------------------------
class Node:
    """A compiled part of a template; ``dynamic`` when it holds an expression."""

    dynamic = False
    condition: Condition | None = None

    def evaluate(self, context: Context, path: str) -> Any:
        raise NotImplementedError


@dataclass
class Constant(Node):
    value: Any

    def evaluate(self, context: Context, path: str) -> Any:
        return self.value


@dataclass
class ObjectNode(Node):
    items: list[tuple[str, Node]]
    condition: Condition | None = None

    def __post_init__(self) -> None:
        self.dynamic = any(node.dynamic for _, node in self.items)

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        result: dict[str, Any] = {}
        filled = False
        for key, node in self.items:
            value = node.evaluate(context, f"{path}.{key}" if path else key)
            if value is MISSING or value == [] or value == {}:
                continue
            result[key] = value
            filled = filled or node.dynamic
        if self.dynamic and not filled:
            return MISSING
        return result


@dataclass
class ArrayNode(Node):
    items: list[Node]

    def __post_init__(self) -> None:
        self.dynamic = any(node.dynamic for node in self.items)

    def evaluate(self, context: Context, path: str) -> Any:
        result: list[Any] = []
        for node in self.items:
            value = node.evaluate(context, f"{path}[{len(result)}]")
            if isinstance(value, list):
                result.extend(value)
            elif value is not MISSING:
                result.append(value)
        return result if result or not self.dynamic else MISSING


@dataclass
class FieldNode(Node):
    """``$field`` and its steps: split, pattern, map, type, de-identify, hash, join."""

    path: str
    condition: Condition | None = None
    required: bool = False
    default: Any = MISSING
    split: str | None = None
    pattern: re.Pattern[str] | None = None
    mapping: dict[str, Any] | None = None
    unmapped: str = "error"
    type: str = "string"
    formats: tuple[str, ...] = ("iso",)
    join: str | None = None
    deidentify: str | None = None
    hashed: bool = False
    capture: re.Pattern[str] | None = None
    group: str | None = None
    translate: tuple[str, str | None, str | None] | None = None  # (ConceptMap url, source system, target system)
    dynamic = True

    @property
    def secret(self) -> bool:
        """Values that identify (de-identified or hashed ones) are never quoted in a report."""
        return self.deidentify is not None or self.hashed

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        found, raw = resolve(context.record, self.path)
        context.columns[path] = self.path  # an element left empty is still named by its column
        values = raw if isinstance(raw, list) else [raw]
        texts: list[Any] = []
        for value in values:
            if isinstance(value, dict | list):
                texts.append(value)
                continue
            text = as_text(value)
            if text is None:
                continue
            if self.split is not None:
                texts.extend(part.strip() for part in text.split(self.split) if part.strip())
            else:
                texts.append(text)
        if not texts:
            if self.default is not MISSING:
                return self.default
            if self.required:
                why = "is empty" if found else "is missing (no such column or field)"
                return context.fail(self.path, f"required value {why}")
            return MISSING
        results = [r for r in (self._one(context, text) for text in texts) if r is not MISSING]
        if self.join is not None:
            return self.join.join(str(r) for r in results) if results else MISSING
        if not results:
            return MISSING
        return results if isinstance(raw, list) or self.split is not None else results[0]

    def _quote(self, text: str) -> str:
        return "the value" if self.secret else repr(text)

    def _one(self, context: Context, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return context.fail(self.path, f"{self._quote(value)} does not match the pattern {self.pattern.pattern!r}")
        if self.capture is not None:
            match = self.capture.fullmatch(value)
            if match is None:
                return context.fail(
                    self.path, f"{self._quote(value)} does not match the pattern {self.capture.pattern!r}"
                )
            if self.group is None:  # every named group that matched, reached as <name>.<group>
                groups = {k: v for k, v in match.groupdict().items() if v}
                return groups or MISSING
            captured = match.group(int(self.group) if self.group.isdigit() else self.group)
            if not captured:
                return MISSING
            value = captured
        result: Any = value
        if self.translate is not None:
            url, system, target = self.translate
            translation = context.translations.get(url)
            if translation is None:
                return context.fail(self.path, f"the ConceptMap {url} is not stored")
            codings = translation.translate(system, value, target)
            if codings:
                return codings[0]
            if self.unmapped == "omit":
                return MISSING
            if self.unmapped == "error":
                return context.fail(self.path, f"the ConceptMap {url} does not translate {self._quote(value)}")
        if self.mapping is not None:
            if value in self.mapping:
                result = self.mapping[value]
            elif self.unmapped == "omit":
                return MISSING
            elif self.unmapped == "error":
                known = ", ".join(sorted(self.mapping)[:12])
                return context.fail(self.path, f"unknown code {self._quote(value)} (known: {known})")
        if isinstance(result, str):
            result = self._convert(context, result)
        if result is MISSING:
            return MISSING
        if self.deidentify is not None:
            result = context.privacy.deidentify(self.deidentify, str(result))
            if result is None:
                return MISSING
        if self.hashed:
            result = context.privacy.keyed_hash(f"field:{self.path}", str(result))
        return result

    def _convert(self, context: Context, text: str) -> Any:
        kind = self.type
        try:
            if kind in ("string", "code"):
                return text
            if kind == "base64Binary":  # e.g. a report's text as Attachment.data
                return base64.b64encode(text.encode("utf-8")).decode("ascii")
            if kind == "integer":
                return int(text)
            if kind in ("decimal", "number"):  # number: also with a decimal comma (3,5)
                written = text.replace(",", ".") if kind == "number" and text.count(",") == 1 else text
                number = float(written)
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError
                integral = number.is_integer() and "." not in written and "e" not in written.lower()
                return int(number) if integral else number
            if kind == "boolean":
                lowered = text.lower()
                if lowered in _TRUE:
                    return True
                if lowered in _FALSE:
                    return False
                raise ValueError
            if kind in DATE_TYPES:
                return to_fhir(text, kind, self.formats, context.zone)
        except DateProblem as problem:
            return context.fail(self.path, f"{self._quote(text)} {problem}")
        except ValueError:
            return context.fail(
                self.path, f"{self._quote(text)} is not a {'valid ' if kind == 'integer' else ''}{kind}"
            )
        raise AssertionError(kind)


@dataclass
class ConcatNode(Node):
    parts: list[Node]
    separator: str = ""
    condition: Condition | None = None
    dynamic = True

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        texts: list[str] = []
        filled = False
        for node in self.parts:
            value = node.evaluate(context, path)
            if value is MISSING:
                continue
            filled = filled or node.dynamic
            texts.extend(str(v) for v in (value if isinstance(value, list) else [value]))
        return self.separator.join(texts) if filled else MISSING


@dataclass
class CoalesceNode(Node):
    """The first of several values that has one."""

    parts: list[Node]
    condition: Condition | None = None
    dynamic = True

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        for node in self.parts:
            value = node.evaluate(context, path)
            if value is not MISSING and value != [] and value != "":
                return value
        return MISSING


@dataclass
class ReferenceNode(Node):
    """A Reference to a resource made from the same record (or to the record's patient)."""

    name: str
    condition: Condition | None = None
    dynamic = True

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        target = context.targets.get(self.name)
        if not target:  # the named resource is not made from this record (its condition is false)
            return MISSING
        references = [{"reference": t} for t in ([target] if isinstance(target, str) else target)]
        for reference in references:
            context.references.setdefault(reference["reference"], []).append(reference)
        return references[0] if isinstance(target, str) else references


@dataclass
class LookupNode(Node):
    """A Reference to a stored resource, found by identifier when the record is written."""

    resource_type: str
    keys: list[tuple[str, Node, Callable[[Context, str], tuple[str, str]]]]  # (key, value node, -> criterion)
    optional: bool = False
    condition: Condition | None = None
    dynamic = True

    def evaluate(self, context: Context, path: str) -> Any:
        if self.condition is not None and not self.condition.holds(context.record):
            return MISSING
        criteria: list[tuple[str, str]] = []
        column = None
        for _key, node, criterion in self.keys:
            value = node.evaluate(context, path)
            if value is MISSING:
                continue
            column = column or getattr(node, "path", None)
            criteria.append(criterion(context, str(value)))
        if not criteria:
            return MISSING
        reference = {"reference": f"{self.resource_type}/pending"}
        context.lookups.append(PendingLookup(self.resource_type, criteria, self.optional, column, reference))
        return reference
