"""Push paths: what received data (DICOM instances, clinical records) becomes, written atomically.

Each ingest maps and validates what it received before a transaction opens, then writes through
the one write path (``interactions.writes.Transaction``) with a Provenance naming the sender.
"""

from fhir_bridge.ingest.dicom import DicomIngest, IngestResult, InstanceOutcome
from fhir_bridge.ingest.provenance import Source

__all__ = ["DicomIngest", "IngestResult", "InstanceOutcome", "Source"]
