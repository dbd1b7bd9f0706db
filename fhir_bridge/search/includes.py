"""``_include`` and ``_revinclude``: the versions a page's matches refer to, or that refer to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, tuple_

from fhir_bridge.search.query import Include
from fhir_bridge.store.schema import REFERENCE, VERSION, VERSION_COLUMNS, index_valid, version_valid

Source = tuple[str, str, int | None]  # (type, id, pk) of a resource on the page


def include_statement(include: Include, sources: list[Source], at_seq: int, limit: int) -> Select[Any]:
    """Versions at ``at_seq`` that ``sources`` refer to (``_include``), or that refer to them
    (``_revinclude``), through the reference index; at most ``limit``, in pk order."""
    reference = REFERENCE.alias()
    scope = [index_valid(reference, at_seq)]
    if include.source_type != "*":
        scope.append(reference.c.res_type == include.source_type)
    if include.parameter:
        scope.append(reference.c.param == include.parameter)
    if include.target_type:
        scope.append(reference.c.target_type == include.target_type)
    if include.reverse:
        pointing = select(reference.c.res_pk).where(
            *scope, tuple_(reference.c.target_type, reference.c.target_id).in_([(t, i) for t, i, _ in sources])
        )
        matches = VERSION.c.res_pk.in_(pointing)
    else:
        pointed = select(reference.c.target_type, reference.c.target_id).where(
            *scope, reference.c.res_pk.in_([pk for _, _, pk in sources]), reference.c.target_id.is_not(None)
        )
        matches = tuple_(VERSION.c.res_type, VERSION.c.res_id).in_(pointed)
    return (
        select(*VERSION_COLUMNS)
        .where(version_valid(at_seq), VERSION.c.deleted.is_(False), matches)
        .order_by(VERSION.c.res_pk)
        .limit(limit)
    )
