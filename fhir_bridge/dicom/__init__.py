"""DICOM input: Part-10 header reading (never the pixels); the multipart bodies of STOW-RS are api/multipart.py.

Nothing here knows about FHIR or privacy: it turns bytes into ``DicomInstance`` records (the
attributes fhir-bridge maps, as plain Python values) or ``DicomReadError``s that say why not.
"""
