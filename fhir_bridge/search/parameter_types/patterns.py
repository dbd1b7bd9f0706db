"""Text comparisons in SQL that an index can answer: prefixes as ranges, LIKE with escaped input.

The values a comparison binds (a pattern, a prefix's range) are computed apart from the SQL that
uses them, so that a search's plan (``search.shapes``) can hold them as values and its statement be
built with placeholders.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

_LAST_CODE_POINT = chr(0x10FFFF)


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def prefix_pattern(prefix: str) -> str:
    """The LIKE pattern of the texts that start with ``prefix``."""
    return escape_like(prefix) + "%"


def contains_pattern(part: str) -> str:
    """The LIKE pattern of the texts that contain ``part``."""
    return f"%{escape_like(part)}%"


def like(column: ColumnElement[Any], pattern: Any) -> ColumnElement[bool]:
    """``column LIKE pattern`` for a pattern made by ``prefix_pattern``/``contains_pattern``."""
    return column.like(pattern, escape="\\")


def like_prefix(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    """``column LIKE 'prefix%'``, for the columns whose prefix search need not use an index."""
    return like(column, prefix_pattern(prefix))


def prefix_range(prefix: str) -> tuple[str, str]:
    """[low, high) of the texts that start with ``prefix``, by code point."""
    return prefix, prefix + _LAST_CODE_POINT


def in_range(column: ColumnElement[Any], low: Any, high: Any) -> ColumnElement[bool]:
    """``low <= column < high``: a prefix match as a range (``prefix_range``), which an index answers
    (a LIKE 'x%' filter may scan).

    Comparison is by code point: SQLite's BINARY collation, and "C" for the column on PostgreSQL.
    """
    return and_(column >= low, column < high)
