"""Text comparisons in SQL that an index can answer: prefixes as ranges, LIKE with escaped input."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_

_LAST_CODE_POINT = chr(0x10FFFF)


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_prefix(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    """``column LIKE 'prefix%'``, for the columns whose prefix search need not use an index."""
    return column.like(escape_like(prefix) + "%", escape="\\")


def like_contains(column: ColumnElement[Any], part: str) -> ColumnElement[bool]:
    return column.like(f"%{escape_like(part)}%", escape="\\")


def starts_with(column: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    """A prefix match as a range, which an index answers (a LIKE 'x%' filter may scan).

    Comparison is by code point: SQLite's BINARY collation, and "C" for the column on PostgreSQL.
    """
    return and_(column >= prefix, column < prefix + _LAST_CODE_POINT)
