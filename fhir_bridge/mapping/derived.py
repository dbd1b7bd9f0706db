"""The resources a study's derived objects add beyond the ImagingStudy: reports, measurements, annotations.

A structured report (``report``), a segmentation or an RT structure set (``annotation``) is an
instance of its study like any image, and also content of its own. The DICOM mapper asks this
module for both: the extensions of the instance's entry in the ImagingStudy, and the resources.

Every id is derived from DICOM UIDs as stored (``codes.resource_id``), so a re-push of the same
instance yields identical resources and no new version, on every push path.
"""

from __future__ import annotations

from typing import Any

from fhir_bridge.dicom.segmentation import is_segmentation
from fhir_bridge.dicom.sr import is_structured_report
from fhir_bridge.mapping import annotation, report
from fhir_bridge.mapping.study_context import StudyContext


def derived_resources(attributes: dict[str, Any], context: StudyContext) -> list[dict[str, Any]]:
    """The resources an SR, SEG or RTSTRUCT instance adds (empty for other instances)."""
    sop_class = attributes["SOPClassUID"]
    if is_structured_report(sop_class):
        return report.report_resources(attributes, context)
    if is_segmentation(sop_class):
        return annotation.annotation_resources(attributes, context)
    return []


def instance_extensions(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """Extensions of the instance's ImagingStudy.series.instance entry (what a SEG or RTSTRUCT segments)."""
    if is_segmentation(attributes["SOPClassUID"]):
        return annotation.instance_extensions(attributes)
    return []


def assign_subject(resources: list[dict[str, Any]], subject: dict[str, Any]) -> None:
    """Make ``subject`` (the stored study's) the subject of derived resources: a study keeps its first patient,
    and what is derived from its instances belongs to that patient too."""
    for resource in resources:
        for element in ("subject", "patient"):
            if element in resource:
                resource[element] = dict(subject)


# Resources that several instances (and reports and segmentations alike) can add: written by filling the stored
# one's gaps (``merge.fill_missing``), never replaced, so their content does not depend on which came first.
SHARED_TYPES = frozenset({"Device", "BodyStructure"})
