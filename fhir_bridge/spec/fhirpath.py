"""A compiler for the FHIRPath subset that the FHIR R4 SearchParameter expressions use.

The search indexes are derived from the specification's own SearchParameter definitions, whose
``expression`` is FHIRPath. All of the R4 definitions use a small part of the language: path
navigation (with choice types such as ``value[x]``), the union ``|``, ``as``/``is`` and
``as()``/``ofType()``, ``where(...)`` with ``resolve() is Type`` or ``field = 'literal'``,
``exists()``, ``and``, ``=`` and ``!=``. Compiling that subset into closures once, at start-up,
makes index extraction a few microseconds per expression (a general FHIRPath engine costs tens).
An expression outside the subset raises ``FhirPathError`` at compile time, never silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple


class FhirPathError(ValueError):
    """The expression uses FHIRPath beyond the supported subset."""


class Item(NamedTuple):
    """One value in a FHIRPath collection; ``type_name`` is known for choice elements.

    A NamedTuple, not a frozen dataclass: indexing a large ImagingStudy makes ~200 of these,
    and a frozen dataclass costs three times as much to build."""

    value: Any
    type_name: str | None = None


class Located(NamedTuple):
    """An ``Item`` that knows where it is: ``parent[key]`` (``parent[key][position]`` in an array).

    Evaluated with ``located=True``, navigation yields these, so that FHIRPath Patch can change what a
    path selects; everything else treats them as Items (same first two fields)."""

    value: Any
    type_name: str | None = None
    parent: dict[str, Any] | None = None
    key: str | None = None
    position: int | None = None


Collection = list[Item]
Evaluator = Callable[[Collection], Collection]
Navigator = Callable[[Collection, str, bool], Collection]

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>!=|[.()|=,\[\]])|(?P<number>\d+)|(?P<name>`[^`]+`|[A-Za-z_][A-Za-z0-9_]*))"
)


def _tokenize(expression: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None:
            raise FhirPathError(f"cannot read {expression[position:]!r} in {expression!r}")
        tokens.append(match.group(match.lastgroup or 0).strip("`"))
        position = match.end()
    return tokens


def _to_bool(collection: Collection) -> bool:
    return len(collection) == 1 and collection[0].value is True


def _navigate(collection: Collection, name: str, choice: bool) -> Collection:
    """The children called ``name``; for a choice element (``value[x]``) its typed forms too."""
    result: Collection = []
    for item in collection:
        node = item.value
        if not isinstance(node, dict):
            continue
        if name in node:
            values = node[name]
            for value in values if isinstance(values, list) else [values]:
                result.append(Item(value))
            continue
        if not choice:
            continue
        for key, value in node.items():  # choice element: value[x] is stored as valueQuantity, ...
            if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                for element in value if isinstance(value, list) else [value]:
                    result.append(Item(element, key[len(name) :]))
    return result


def _navigate_located(collection: Collection, name: str, choice: bool) -> Collection:
    """``_navigate``, keeping where each child is (``Located``)."""
    result: list[Any] = []
    for item in collection:
        node = item.value
        if not isinstance(node, dict):
            continue
        keys = [name] if name in node else []
        if not keys and choice:
            keys = [k for k in node if k.startswith(name) and len(k) > len(name) and k[len(name)].isupper()]
        for key in keys:
            type_name = key[len(name) :] if key != name else None
            value = node[key]
            if isinstance(value, list):
                result += [Located(element, type_name, node, key, i) for i, element in enumerate(value)]
            else:
                result.append(Located(value, type_name, node, key, None))
    return result


def _reference_type(reference: Any) -> str | None:
    """The resource type a Reference (or canonical) points at, read from its text."""
    text = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(text, str) or text.startswith("#"):
        return reference.get("type") if isinstance(reference, dict) else None
    parts = text.split("?")[0].split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 else (reference.get("type") if isinstance(reference, dict) else None)


def _is_type(item: Item, type_name: str) -> bool:
    if item.type_name is not None:
        return item.type_name.lower() == type_name.lower()
    if isinstance(item.value, dict) and "resourceType" in item.value:
        return item.value["resourceType"] == type_name
    return True  # a non-choice element is the type its definition says; the spec only casts choices


class _Parser:
    """Recursive-descent parser producing closures over collections."""

    def __init__(
        self, expression: str, resource_types: frozenset[str], choice_elements: frozenset[str], navigate: Navigator
    ) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.position = 0
        self.resource_types = resource_types
        self.choice_elements = choice_elements
        self.navigate = navigate

    def parse(self) -> Evaluator:
        evaluator = self._and()
        if self.position != len(self.tokens):
            raise FhirPathError(f"unexpected {self.tokens[self.position]!r} in {self.expression!r}")
        return evaluator

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise FhirPathError(f"expected {expected or 'more'} in {self.expression!r}")
        self.position += 1
        return token

    def _and(self) -> Evaluator:
        left = self._equality()
        while self._peek() == "and":
            self._take()
            right = self._equality()
            left = (lambda a, b: lambda c: [Item(_to_bool(a(c)) and _to_bool(b(c)))])(left, right)
        return left

    def _equality(self) -> Evaluator:
        left = self._union()
        while self._peek() in ("=", "!="):
            negate = self._take() == "!="
            right = self._union()

            def compare(c: Collection, a: Evaluator = left, b: Evaluator = right, neg: bool = negate) -> Collection:
                x, y = a(c), b(c)
                if not x or not y:
                    return []
                equal = [i.value for i in x] == [i.value for i in y]
                return [Item(equal != neg)]

            left = compare
        return left

    def _union(self) -> Evaluator:
        left = self._type_expression()
        while self._peek() == "|":
            self._take()
            right = self._type_expression()
            left = (lambda a, b: lambda c: a(c) + b(c))(left, right)
        return left

    def _type_expression(self) -> Evaluator:
        operand = self._path()
        while self._peek() in ("as", "is"):
            operator = self._take()
            type_name = self._take()
            operand = self._cast(operand, type_name) if operator == "as" else self._test(operand, type_name)
        return operand

    @staticmethod
    def _cast(operand: Evaluator, type_name: str) -> Evaluator:
        return lambda c: [i for i in operand(c) if _is_type(i, type_name)]

    @staticmethod
    def _test(operand: Evaluator, type_name: str) -> Evaluator:
        return lambda c: [Item(all(_is_type(i, type_name) for i in found))] if (found := operand(c)) else []

    def _path(self) -> Evaluator:
        evaluator = self._term()
        while self._peek() in (".", "["):
            if self._take() == "[":
                index = int(self._take())
                self._take("]")
                evaluator = (lambda source, i: lambda c: source(c)[i : i + 1])(evaluator, index)
            else:
                evaluator = self._step(evaluator)
        return evaluator

    def _term(self) -> Evaluator:
        token = self._peek()
        if token == "(":
            self._take()
            inner = self._and()
            self._take(")")
            return inner
        if token is not None and token.startswith("'"):
            literal = self._take()[1:-1]
            return lambda c: [Item(literal)]
        if token in ("true", "false"):
            value = self._take() == "true"
            return lambda c: [Item(value)]
        if token in self.resource_types or token in ("Resource", "DomainResource"):
            self._take()
            return lambda c: c  # the root: the resource the expression is evaluated on
        return self._step(lambda c: c)

    def _step(self, source: Evaluator) -> Evaluator:
        name = self._take()
        if self._peek() != "(":
            choice = name in self.choice_elements
            navigate = self.navigate
            return lambda c: navigate(source(c), name, choice)
        self._take("(")
        return self._function(source, name)

    def _function(self, source: Evaluator, name: str) -> Evaluator:
        if name in ("as", "ofType", "is"):
            type_name = self._take()
            self._take(")")
            return self._test(source, type_name) if name == "is" else self._cast(source, type_name)
        if name == "where":
            predicate = self._and()
            self._take(")")
            return lambda c: [i for i in source(c) if _to_bool(predicate([i]))]
        self._take(")")
        if name == "resolve":
            return lambda c: [Item(i.value, _reference_type(i.value)) for i in source(c)]
        if name == "exists":
            return lambda c: [Item(bool(source(c)))]
        if name == "first":
            return lambda c: source(c)[:1]
        raise FhirPathError(f"function {name}() is not supported in {self.expression!r}")


def compile_expression(
    expression: str,
    resource_types: frozenset[str],
    choice_elements: frozenset[str] = frozenset(),
    *,
    located: bool = False,
) -> Evaluator:
    """Compile ``expression`` into a function from a collection to a collection.

    ``choice_elements`` names the elements defined as ``name[x]``; only those are looked up in
    their typed forms (the lookup scans an element's keys, so it is worth skipping elsewhere).
    ``located``: the elements found are ``Located`` (where they are in the resource), for FHIRPath Patch.
    """
    navigate = _navigate_located if located else _navigate
    return _Parser(expression, resource_types, choice_elements, navigate).parse()


def split_union(expression: str) -> list[str]:
    """Split an expression at its top-level ``|`` (the spec shares one expression across bases)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in expression:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "|" and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]
