"""Reading a mapping file (YAML or JSON) and checking it against ``mappings/mapping.schema.json``.

Every problem is reported at once, each with its JSON pointer and, for YAML, its line, so an
integration engineer fixes a file in one round. The data is read with a YAML loader that keeps
dates and yes/no as text: ``2024-01-01`` or ``NO`` (Norway) in a value map must stay strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "mappings" / "mapping.schema.json"
MAPPING_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class MappingProblem:
    """One problem of a mapping file: where (JSON pointer, line when known) and what."""

    pointer: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.pointer or '/'}: {self.message}"


class MappingError(ValueError):
    """A mapping file that cannot be used; ``problems`` lists everything wrong with it."""

    def __init__(self, source: str, problems: Sequence[MappingProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(str(p) for p in self.problems))


class _Loader(yaml.SafeLoader):
    """YAML 1.1 without the surprises: no timestamps and no yes/no/on/off booleans (true/false stay)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BOOL = "tag:yaml.org,2002:bool"


def _only_true_false(loader: _Loader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    lowered = str(text).lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


_Loader.add_constructor(_BOOL, _only_true_false)


def pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


class Document:
    """A parsed mapping file: its data and where each part of it is written."""

    def __init__(self, source: str, data: Any, node: yaml.Node | None) -> None:
        self.source = source
        self.data = data
        self._node = node

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest part of ``path`` that exists (YAML only; JSON files have no lines kept)."""
        node = self._node
        if node is None:
            return None
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((value for key, value in node.value if key.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    def problem(self, path: Sequence[str | int], message: str) -> MappingProblem:
        return MappingProblem(pointer(path), message, self.line(path))


def parse(text: str, source: str) -> Document:
    """Parse YAML (a superset of JSON); a syntax error is a problem with its line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = _Loader(text).get_single_data() if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        message = getattr(error, "problem", None) or str(error)
        line = mark.line + 1 if mark else None
        raise MappingError(source, [MappingProblem("", f"not valid YAML/JSON: {message}", line)]) from None
    if source.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            raise MappingError(source, [MappingProblem("", f"not valid JSON: {error.msg}", error.lineno)]) from None
    return Document(source, data, node)


def read(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MappingError(str(path), [MappingProblem("", f"cannot read the file: {error}")]) from None
    return parse(text, str(path))


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _keys_are_text(data: Any, path: list[str | int], document: Document, problems: list[MappingProblem]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                problems.append(document.problem(path, f"the key {key!r} is not text: quote it"))
            _keys_are_text(value, [*path, str(key)], document, problems)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _keys_are_text(value, [*path, index], document, problems)


def schema_problems(document: Document) -> list[MappingProblem]:
    """Everything the JSON Schema finds, deepest first per place (the most specific message)."""
    problems: list[MappingProblem] = []
    _keys_are_text(document.data, [], document, problems)
    if problems:
        return problems
    seen: set[tuple[str, str]] = set()
    errors = sorted(_validator().iter_errors(document.data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for error in errors:
        path = list(error.absolute_path)
        message = _message(error)
        key = (pointer(path), message)
        if key not in seen:
            seen.add(key)
            problems.append(document.problem(path, message))
    return problems


def _message(error: Any) -> str:
    if error.validator == "propertyNames":
        keys = "$field, $concat, $coalesce, $reference, $lookup"
        return f"{error.instance!r} is not an expression key ($if in an element; {keys})"
    if error.validator == "required" and error.schema.get("description", "").startswith("an expression"):
        return error.schema["description"]
    if error.validator == "not" and error.validator_value == {"required": ["system", "issuer"]}:
        return "set the patient's system or its issuer, not both"
    return error.message
