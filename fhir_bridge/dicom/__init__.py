"""DICOM input: Part-10 header reading (never the pixels), STOW-RS multipart parsing, grouping by study.

Nothing here knows about FHIR or privacy: it turns bytes into ``DicomInstance`` records (the
attributes fhir-bridge maps, as plain Python values) or ``DicomReadError``s that say why not.
"""
