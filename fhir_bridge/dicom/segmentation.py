"""What is read of a segmentation (SEG) or an RT Structure Set (RTSTRUCT): its segments or ROIs, coded.

SEG: the Segment Sequence (number, label, segmented property category and type, anatomic region,
algorithm type and name, tracking identifiers) and the series it segments (Referenced Series
Sequence). RTSTRUCT: the Structure Set ROI Sequence (number, name, generation algorithm), the RT ROI
Observations Sequence (interpreted type, coded identification) and the referenced study and series
(Referenced Frame of Reference Sequence). Contour and pixel data are never read.
"""

from __future__ import annotations

from fhir_bridge.dicom.structured import Shape

SEGMENTATION_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
    }
)
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"

TEXT_ATTRIBUTES = ("SegmentationType",)

_REFERENCED_SERIES: Shape = {
    "SeriesInstanceUID": "text",
    "ReferencedInstanceSequence": {"ReferencedSOPClassUID": "text", "ReferencedSOPInstanceUID": "text"},
}
SEGMENT: Shape = {
    "SegmentNumber": "text",
    "SegmentLabel": "text",
    "SegmentedPropertyCategoryCodeSequence": "codes",
    "SegmentedPropertyTypeCodeSequence": "codes",
    "SegmentedPropertyTypeModifierCodeSequence": "codes",
    "AnatomicRegionSequence": "codes",
    "SegmentAlgorithmType": "text",
    "SegmentAlgorithmName": "text",
    "SegmentationAlgorithmIdentificationSequence": {"AlgorithmName": "text", "AlgorithmVersion": "text"},
    "TrackingID": "text",
    "TrackingUID": "text",
}
STRUCTURE_SET_ROI: Shape = {"ROINumber": "text", "ROIName": "text", "ROIGenerationAlgorithm": "text"}
ROI_OBSERVATION: Shape = {
    "ReferencedROINumber": "text",
    "RTROIInterpretedType": "text",
    "RTROIIdentificationCodeSequence": "codes",
}
FRAME_OF_REFERENCE: Shape = {
    "RTReferencedStudySequence": {
        "ReferencedSOPInstanceUID": "text",  # the referenced study's Study Instance UID
        "RTReferencedSeriesSequence": {"SeriesInstanceUID": "text"},
    }
}
# Top-level sequences: keyword -> the shape of its items.
SHAPES: dict[str, Shape] = {
    "SegmentSequence": SEGMENT,
    "ReferencedSeriesSequence": _REFERENCED_SERIES,
    "StructureSetROISequence": STRUCTURE_SET_ROI,
    "RTROIObservationsSequence": ROI_OBSERVATION,
    "ReferencedFrameOfReferenceSequence": FRAME_OF_REFERENCE,
}


def is_segmentation(sop_class_uid: str) -> bool:
    """A SEG or an RTSTRUCT: an instance whose segments or ROIs become annotations."""
    return sop_class_uid in SEGMENTATION_CLASSES or sop_class_uid == RT_STRUCTURE_SET
