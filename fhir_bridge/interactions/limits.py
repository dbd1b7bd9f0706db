"""What one search may ask for: the settings of the same names, with the search language's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_bridge.search.query import MAX_CHAIN_DEPTH, MAX_OR_VALUES, MAX_SEARCH_PARAMETERS

MAX_INCLUDED = 1000  # included resources per page by default (setting max_include), so one query cannot fan out


@dataclass(frozen=True)
class Limits:
    default_count: int = 20
    max_count: int = 1000
    max_include: int = MAX_INCLUDED
    max_chain_depth: int = MAX_CHAIN_DEPTH
    max_search_parameters: int = MAX_SEARCH_PARAMETERS
    max_or_values: int = MAX_OR_VALUES
