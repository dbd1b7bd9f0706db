"""One module per search parameter type, each with its index rows and its SQL predicate.

``PARAMETER_TYPES`` maps the SearchParameter ``type`` to its module; index extraction
(``search.index``) and clause compilation (``search.criteria``) dispatch through it; ``PLANNED_TYPES``
those of them whose values are written as a plan first (``search.shapes``).
"""

from __future__ import annotations

from fhir_bridge.search.parameter_types import composite, date, number, quantity, reference, string, token, uri
from fhir_bridge.search.parameter_types.protocol import ParameterType, PlannedType

PARAMETER_TYPES: dict[str, ParameterType] = {
    "string": string,
    "token": token,
    "date": date,
    "number": number,
    "quantity": quantity,
    "reference": reference,
    "uri": uri,
    "composite": composite,
}

# The types whose values are planned (``search.shapes``): their searches share compiled statements.
PLANNED_TYPES: dict[str, PlannedType] = {
    "token": token,
    "reference": reference,
    "date": date,
    "string": string,
    "uri": uri,
    "number": number,
    "quantity": quantity,
}
