"""Network listeners (edges): DICOM DIMSE; they take the services, never build them."""
