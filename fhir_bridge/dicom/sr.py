"""What is read of a structured report (SR, including Key Object Selection): its content tree and evidence.

The content tree is read as nested dicts keyed by DICOM keyword (see ``structured``): per content
item its relationship, value type, concept name and value (text, code, number with units, UID,
date/time, referenced SOP instances), and its children. PNAME values, observer names and the
SCOORD graphic data are not read: they are never mapped (names), or not worth their size.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.dicom.structured import Shape

SR_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.88."  # every SR Storage SOP Class (PS3.4 B.5) starts so
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"

# Top-level attributes of the SR Document General and Key Object Document modules.
TEXT_ATTRIBUTES = ("CompletionFlag", "VerificationFlag", "PreliminaryFlag", "ContentDate", "ContentTime")

REFERENCED_SOP: Shape = {
    "ReferencedSOPClassUID": "text",
    "ReferencedSOPInstanceUID": "text",
    "ReferencedFrameNumber": "text",
    "ReferencedSegmentNumber": "text",
}
CONTENT_ITEM: dict[str, Any] = {
    "RelationshipType": "text",
    "ValueType": "text",
    "ConceptNameCodeSequence": "codes",
    "TextValue": "text",
    "ConceptCodeSequence": "codes",
    "MeasuredValueSequence": {
        "NumericValue": "text",
        "FloatingPointValue": "text",
        "MeasurementUnitsCodeSequence": "codes",
    },
    "NumericValueQualifierCodeSequence": "codes",
    "UID": "text",
    "DateTime": "text",
    "Date": "text",
    "Time": "text",
    "ObservationDateTime": "text",
    "ObservationUID": "text",
    "ReferencedSOPSequence": REFERENCED_SOP,
    "ContentTemplateSequence": {"MappingResource": "text", "TemplateIdentifier": "text"},
}
CONTENT_ITEM["ContentSequence"] = CONTENT_ITEM  # content items nest

EVIDENCE: Shape = {
    "StudyInstanceUID": "text",
    "ReferencedSeriesSequence": {"SeriesInstanceUID": "text", "ReferencedSOPSequence": REFERENCED_SOP},
}
# Top-level sequences: keyword -> the shape of its items.
SHAPES: dict[str, Shape] = {
    "ContentSequence": CONTENT_ITEM,
    "ContentTemplateSequence": CONTENT_ITEM["ContentTemplateSequence"],
    "CurrentRequestedProcedureEvidenceSequence": EVIDENCE,
    "VerifyingObserverSequence": {"VerificationDateTime": "text"},
}


def is_structured_report(sop_class_uid: str) -> bool:
    return sop_class_uid.startswith(SR_CLASS_ROOT)
