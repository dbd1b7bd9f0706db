"""Declarative mappings of clinical records (CSV, NDJSON, JSON, HL7 v2, plugin formats) into FHIR R4.

A mapping file (``mappings/*.yaml``, schema ``mappings/mapping.schema.json``) is compiled once
(``registry.MappingRegistry``); ``mapper.ClinicalMapper`` applies it to one record under the site's
privacy policy; ``fhir_bridge.ingest.clinical`` writes the result.
"""

from fhir_bridge.mapping.clinical.compiler import Mapping, compile_document
from fhir_bridge.mapping.clinical.document import MappingError, MappingProblem
from fhir_bridge.mapping.clinical.mapper import ClinicalMapper, MappedRecord
from fhir_bridge.mapping.clinical.readers import ENTRY_POINT_GROUP, Reader, ReaderOptions, SourceRecord
from fhir_bridge.mapping.clinical.registry import MappingRegistry, UnknownMapping

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClinicalMapper",
    "MappedRecord",
    "Mapping",
    "MappingError",
    "MappingProblem",
    "MappingRegistry",
    "Reader",
    "ReaderOptions",
    "SourceRecord",
    "UnknownMapping",
    "compile_document",
]
