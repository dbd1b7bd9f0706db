"""Compiled searches shared by shape: searches that differ only in their values run one statement.

Building a search's SELECT (SQLAlchemy constructs, then its cache key) costs more CPU than running
a simple indexed search. Two searches of one *shape* (same type, parameters, modifiers, number of
values, sort, paging and count shape) differ only in the values bound to the statement, so the
statement of the first one is kept (``ShapeCache``) and the others run it with their own values.

What decides the shape is written down as a plan of the search's values (``search.compiler``): a
tree of tuples and frozen dataclasses whose leaves are either *values* (``str``, ``int``, ``float``:
bound, they never change the SQL) or *structure* (``None``, ``bool``, the dataclasses' classes and
the tuples' lengths and enum members: they do). ``parametrize`` splits a plan into its shape (the key) and its values
(the statement's parameters); ``placeholders`` gives the plan with each value replaced by a named
placeholder, from which the shared statement is built. The code that builds SQL from a plan never inspects a
value (a placeholder cannot be compared or tested for truth), so a statement built from one plan
is the statement of every plan of its shape.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import Select, bindparam
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import replacement_traverse

_VALUES = (str, int, float)


def _walk(plan: Any, params: dict[str, Any], bind: bool) -> tuple[Any, Any]:
    """(shape, plan with placeholders when ``bind``) of ``plan``, its values added to ``params`` as p0, p1..."""
    if plan is None or isinstance(plan, bool | enum.Enum):
        return plan, plan
    if isinstance(plan, _VALUES):
        name = f"p{len(params)}"
        params[name] = plan
        # untyped: compared with a column, a placeholder takes the column's type
        return type(plan).__name__, bindparam(name, required=True) if bind else None
    if isinstance(plan, tuple):
        pairs = [_walk(item, params, bind) for item in plan]
        return tuple(shape for shape, _ in pairs), tuple(bound for _, bound in pairs)
    if dataclasses.is_dataclass(plan) and not isinstance(plan, type):
        pairs = [_walk(getattr(plan, f.name), params, bind) for f in dataclasses.fields(plan)]
        bound = type(plan)(*(b for _, b in pairs)) if bind else None
        return (type(plan).__name__, *(shape for shape, _ in pairs)), bound
    raise TypeError(f"a search plan holds values, tuples and dataclasses, not {type(plan).__name__}")


def parametrize(plan: Any) -> tuple[Any, dict[str, Any]]:
    """(shape, the values by placeholder name) of ``plan``."""
    params: dict[str, Any] = {}
    shape, _ = _walk(plan, params, bind=False)
    return shape, params


def placeholders(plan: Any) -> Any:
    """``plan`` with each value replaced by its placeholder (named as ``parametrize`` names its values)."""
    return _walk(plan, {}, bind=True)[1]


class ShapeCache:
    """The statements of the most recently used search shapes (at most ``size``, least recent dropped)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._statements: OrderedDict[Any, Select[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._statements)

    def get(self, shape: Any) -> Select[Any] | None:
        with self._lock:
            statement = self._statements.get(shape)
            if statement is None:
                self.misses += 1
                return None
            self.hits += 1
            self._statements.move_to_end(shape)
            return statement

    def put(self, shape: Any, statement: Select[Any]) -> None:
        with self._lock:
            self._statements[shape] = statement
            self._statements.move_to_end(shape)
            while len(self._statements) > self.size:
                self._statements.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._statements.clear()
            self.hits = self.misses = 0


def with_values(statement: Select[Any], values: dict[str, Any]) -> Select[Any]:
    """``statement`` with ``values`` in its placeholders, each typed by its value where the SQL gave
    it no type (a placeholder in arithmetic, e.g. a date bound minus a width): so that it can be
    rendered with its values (``fhir-bridge explain``), which an untyped value cannot."""

    def bound(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in values:
            typed = None if isinstance(element.type, NullType) else element.type
            return bindparam(element.key, values[element.key], type_=typed)
        return None

    return replacement_traverse(statement, {}, bound)  # type: ignore[return-value]
