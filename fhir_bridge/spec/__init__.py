"""FHIR R4 definitions loaded from the specification's own data (see SOURCE.md)."""
