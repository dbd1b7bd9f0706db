"""Segmentations (SEG) and RT structure sets (RTSTRUCT) -> findable annotations.

FHIR R4 has no resource for a segment, so an annotation is recorded twice, linked both ways:

- on the ImagingStudy, the SEG or RTSTRUCT instance's entry (``series.instance``) carries one
  ``segment`` extension per segment or ROI (number, label, segmented property category and type,
  anatomic region, algorithm type and name, and a reference to its Observation) and one
  ``segmented-series`` extension per series it segments. Local search parameters index them
  (``spec/data/local-search-parameters.json``): ``ImagingStudy?segmentation=<code>``,
  ``segmentation-method``, ``segmentation-region`` and the composite ``segmentation-site``
  (structure and anatomic region of the same segment);
- one ``Observation`` per segment: ``code`` the segmented structure (Segmented Property Type, or
  for an ROI its RT ROI Identification Code), ``category`` imaging + the kind of object (DCM SEG or
  RTSTRUCT) + the Segmented Property Category, ``bodySite`` the anatomic region, ``method`` the
  algorithm type, ``device`` the algorithm (a Device by name and version), ``focus`` the tracked
  finding (Tracking UID, shared with SR measurements of the same lesion), ``derivedFrom`` the
  ImagingStudy. ``Observation?derived-from=ImagingStudy/<id>`` and
  ``ImagingStudy?_has:Observation:derived-from:code=<code>`` reach one from the other.

Labels (Segment Label, ROI Name) and Tracking IDs are free text: present only when the privacy
policy keeps descriptors. RT ROIs that are points or markers (isocentre, marker, registration)
are not segmented structures and are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_bridge.dicom.segmentation import RT_STRUCTURE_SET
from fhir_bridge.mapping import codes
from fhir_bridge.mapping.study_context import IMAGING, StudyContext, reference, tracked_finding

SEGMENT_EXTENSION = "urn:fhir-bridge:StructureDefinition:segment"
SEGMENTED_SERIES_EXTENSION = "urn:fhir-bridge:StructureDefinition:segmented-series"
ALGORITHM_TYPE_SYSTEM = "urn:fhir-bridge:CodeSystem:segment-algorithm-type"
KINDS = {
    "SEG": {"coding": [{"system": codes.DCM, "code": "SEG", "display": "Segmentation"}]},
    "RTSTRUCT": {"coding": [{"system": codes.DCM, "code": "RTSTRUCT", "display": "Radiotherapy Structure Set"}]},
}
POINT_ROIS = frozenset({"ISOCENTER", "MARKER", "REGISTRATION"})  # RT ROI Interpreted Types that are not volumes


@cache
def algorithm_types() -> dict[str, str]:
    """Code -> display of the segment algorithm types (``data/codesystem-segment-algorithm-type.json``)."""
    text = files("fhir_bridge.mapping").joinpath("data/codesystem-segment-algorithm-type.json").read_text("utf-8")
    return {concept["code"]: concept["display"] for concept in json.loads(text)["concept"]}


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG or ROI of an RTSTRUCT, as FHIR datatypes."""

    number: int
    kind: str  # SEG or RTSTRUCT
    label: str | None = None
    category: dict[str, Any] | None = None
    structure: dict[str, Any] | None = None
    region: dict[str, Any] | None = None
    algorithm_type: str | None = None
    algorithm_name: str | None = None
    algorithm_version: str | None = None
    tracking_id: str | None = None
    tracking_uid: str | None = None


def segment_observation_id(sop_instance_uid: str, number: int) -> str:
    return codes.resource_id("Observation", "segment", sop_instance_uid, str(number))


def segments(attributes: dict[str, Any]) -> list[Segment]:
    """The segments (SEG) or volume ROIs (RTSTRUCT) of an instance, in the order of their numbers."""
    found = _rois(attributes) if attributes["SOPClassUID"] == RT_STRUCTURE_SET else _segments(attributes)
    return sorted({segment.number: segment for segment in found}.values(), key=lambda s: s.number)


def _segments(attributes: dict[str, Any]) -> list[Segment]:
    found = []
    for item in attributes.get("SegmentSequence") or []:
        number = codes.unsigned(item.get("SegmentNumber"))
        if number is None:
            continue
        algorithm = (item.get("SegmentationAlgorithmIdentificationSequence") or [{}])[0]
        found.append(
            Segment(
                number=number,
                kind="SEG",
                label=codes.text(item.get("SegmentLabel")),
                category=codes.concept(item.get("SegmentedPropertyCategoryCodeSequence")),
                structure=codes.concept(item.get("SegmentedPropertyTypeCodeSequence")),
                region=codes.concept(item.get("AnatomicRegionSequence")),
                algorithm_type=_algorithm_type(item.get("SegmentAlgorithmType")),
                algorithm_name=codes.text(item.get("SegmentAlgorithmName"))
                or codes.text(algorithm.get("AlgorithmName")),
                algorithm_version=codes.text(algorithm.get("AlgorithmVersion")),
                tracking_id=codes.text(item.get("TrackingID")),
                tracking_uid=codes.text(item.get("TrackingUID")),
            )
        )
    return found


def _rois(attributes: dict[str, Any]) -> list[Segment]:
    observations = {
        codes.unsigned(item.get("ReferencedROINumber")): item
        for item in attributes.get("RTROIObservationsSequence") or []
    }
    found = []
    for item in attributes.get("StructureSetROISequence") or []:
        number = codes.unsigned(item.get("ROINumber"))
        if number is None:
            continue
        observation = observations.get(number, {})
        interpreted = codes.text(observation.get("RTROIInterpretedType"))
        if interpreted in POINT_ROIS:
            continue
        found.append(
            Segment(
                number=number,
                kind="RTSTRUCT",
                label=codes.text(item.get("ROIName")),
                category={"text": interpreted} if interpreted else None,
                structure=codes.concept(observation.get("RTROIIdentificationCodeSequence")),
                algorithm_type=_algorithm_type(item.get("ROIGenerationAlgorithm")),
            )
        )
    return found


def _algorithm_type(value: Any) -> str | None:
    code = (codes.text(value) or "").upper()
    return code if code in algorithm_types() else None


def segmented_series(attributes: dict[str, Any]) -> list[str]:
    """The Series Instance UIDs a SEG (Referenced Series Sequence) or an RTSTRUCT (its frame of reference) segments."""
    found: list[str] = []
    for series in attributes.get("ReferencedSeriesSequence") or []:
        found.append(series.get("SeriesInstanceUID"))
    for frame in attributes.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                found.append(series.get("SeriesInstanceUID"))
    return list(dict.fromkeys(uid for uid in found if isinstance(uid, str) and codes.text(uid)))


def algorithm_coding(code: str) -> dict[str, str]:
    return {"system": ALGORITHM_TYPE_SYSTEM, "code": code, "display": algorithm_types()[code]}


# on the ImagingStudy --------------------------------------------------------------------------------
def instance_extensions(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """What the instance segments, for its ``ImagingStudy.series.instance`` entry."""
    sop_uid = attributes["SOPInstanceUID"]
    extensions = []
    for segment in segments(attributes):
        parts: list[dict[str, Any]] = [{"url": "number", "valueUnsignedInt": segment.number}]
        if segment.label:
            parts.append({"url": "label", "valueString": segment.label})
        for name, concept in (("category", segment.category), ("type", segment.structure), ("region", segment.region)):
            if concept:
                parts.append({"url": name, "valueCodeableConcept": concept})
        if segment.algorithm_type:
            parts.append({"url": "algorithmType", "valueCoding": algorithm_coding(segment.algorithm_type)})
        if segment.algorithm_name:
            parts.append({"url": "algorithmName", "valueString": segment.algorithm_name})
        observation = f"Observation/{segment_observation_id(sop_uid, segment.number)}"
        parts.append({"url": "observation", "valueReference": {"reference": observation}})
        extensions.append({"url": SEGMENT_EXTENSION, "extension": parts})
    extensions.extend({"url": SEGMENTED_SERIES_EXTENSION, "valueId": uid} for uid in segmented_series(attributes))
    return extensions


# the resources ----------------------------------------------------------------------------------------
def annotation_resources(attributes: dict[str, Any], context: StudyContext) -> list[dict[str, Any]]:
    """An Observation per segment, the algorithms' Devices and the tracked findings' BodyStructures."""
    sop_uid = attributes["SOPInstanceUID"]
    resources: dict[str, dict[str, Any]] = {}
    observations = []
    for segment in segments(attributes):
        observation = context.resource("Observation", segment_observation_id(sop_uid, segment.number))
        observation["status"] = "final"
        observation["category"] = [IMAGING, KINDS[segment.kind], *([segment.category] if segment.category else [])]
        code = dict(segment.structure or {})
        if segment.label:
            code["text"] = segment.label
        observation["code"] = code or {"text": f"{segment.kind} segment {segment.number}"}
        observation["subject"] = context.subject
        if segment.tracking_uid:
            body = tracked_finding(
                context, segment.tracking_uid, segment.tracking_id, segment.structure, segment.region
            )
            resources.setdefault(f"BodyStructure/{body['id']}", body)
            observation["focus"] = [reference(body)]
        if context.effective:
            observation["effectiveDateTime"] = context.effective
        if segment.region:
            observation["bodySite"] = segment.region
        if segment.algorithm_type:
            observation["method"] = {"coding": [algorithm_coding(segment.algorithm_type)]}
        if segment.algorithm_name:
            device = algorithm_device(segment.algorithm_name, segment.algorithm_version)
            resources.setdefault(f"Device/{device['id']}", device)
            observation["device"] = reference(device)
        observation["derivedFrom"] = [context.study]
        observations.append(observation)
    return [*observations, *resources.values()]


def algorithm_device(name: str, version: str | None) -> dict[str, Any]:
    """The software that segmented, by name and version (like the acquiring equipment, by maker and model)."""
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": codes.resource_id("Device", "algorithm", name, version or ""),
        "deviceName": [{"name": name, "type": "model-name"}],
    }
    if version:
        device["version"] = [{"value": version}]
    return device
