"""Paging links of searchset and history Bundles."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode


def page_url(path: str, parameters: Iterable[tuple[str, str]]) -> str:
    """``path`` with ``parameters`` as its query (none: the bare path)."""
    query = urlencode(list(parameters))
    return f"{path}?{query}" if query else path
