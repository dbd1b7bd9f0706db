"""What each search parameter type module provides: its index rows and the SQL its values compile to.

As in Blaze (one ``search_param/<type>`` namespace each) and HAPI (one predicate builder per type),
the two halves of a type live together, so that what is written to an index table and what a search
asks of it are read side by side and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, FromClause

from fhir_bridge.search.query import Criterion
from fhir_bridge.spec.fhirpath import Item
from fhir_bridge.spec.registry import SearchParameter

Entry = dict[str, Any]  # one index row: the type's value columns (the store adds pk, type, seq)


class ParameterType(Protocol):
    """A module per type (``token``, ``string``, ...) satisfies this protocol."""

    # Every row of a table carries every column (the store inserts each table's rows in one executemany).
    COLUMN_DEFAULTS: Entry

    def entries(self, item: Item, parameter: SearchParameter) -> Iterator[Entry]:
        """The index rows one element found by the parameter's expression gives."""
        ...

    def matches(self, table: FromClause, criterion: Criterion, values: Sequence[str]) -> ColumnElement[bool]:
        """The condition on an index row of ``table`` that it matches any of ``values`` (ORed)."""
        ...

    def sort_column(self, table: FromClause, descending: bool) -> ColumnElement[Any]:
        """The column a resource is sorted by (its least value ascending, its greatest descending)."""
        ...


class PlannedType(Protocol):
    """A type whose values' SQL is written as a plan first (``search.shapes``), so that searches that
    differ only in their values share one statement."""

    def terms(self, criterion: Criterion, values: Sequence[str]) -> tuple[Any, ...] | None:
        """The plan of ``values``: what of them the SQL depends on, as values (bound) and structure;
        None under a modifier whose SQL is built from the values directly (``matches``)."""
        ...

    def terms_matches(self, table: FromClause, terms: tuple[Any, ...]) -> ColumnElement[bool]:
        """What ``matches`` gives, from the plan (whose values may be placeholders)."""
        ...
