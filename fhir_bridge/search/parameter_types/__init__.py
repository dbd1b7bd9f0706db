"""One module per search parameter type, each with its index rows and its SQL predicate.

``PARAMETER_TYPES`` maps the SearchParameter ``type`` to its module; index extraction
(``search.index``) and clause compilation (``search.criteria``) dispatch through it.
"""

from __future__ import annotations

from fhir_bridge.search.parameter_types import composite, date, number, quantity, reference, string, token, uri
from fhir_bridge.search.parameter_types.protocol import ParameterType

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
