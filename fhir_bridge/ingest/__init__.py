"""The one function every push path ends in: write the FHIR resources of received data atomically.

DICOM (STOW-RS, single-file POST, the CLI) calls ``DicomIngest.ingest``; it maps, merges into what
is stored and writes Patient, ImagingStudy, Endpoint, Device and a Provenance in one transaction.
"""

from fhir_bridge.ingest.dicom import DicomIngest, IngestResult, InstanceOutcome, Source, dicom_mapper

__all__ = ["DicomIngest", "IngestResult", "InstanceOutcome", "Source", "dicom_mapper"]
