"""Translation into FHIR R4: DICOM headers (already de-identified) into ImagingStudy, Patient, Endpoint, Device.

``DicomMapper`` builds the resources of one study from its instances' attributes; ``StudyMerge``
folds ImagingStudy resources together (the union of their series and instances), which is how
instances arriving in any order, twice, or from several senders end as one exact study.
"""

from fhir_bridge.mapping.dicom import DicomMapper, MappingConfig, StudyResources
from fhir_bridge.mapping.merge import StudyMerge, fill_missing

__all__ = ["DicomMapper", "MappingConfig", "StudyMerge", "StudyResources", "fill_missing"]
