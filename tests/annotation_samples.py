"""Derived DICOM objects for the tests: SEG, TID 1500 SR and KOS made by highdicom, and pydicom's real SR, SEG
and RTSTRUCT files, all of one patient whose identifiers must never be stored.

highdicom builds the objects the way AI and quantitative-imaging tools emit them (it is what many of them
use), from a CT image of ``dicom_samples``; the real files are pydicom's, with the patient and study rewritten.
Every object carries identifying free text (a segment label, a tracking identifier, an observer's name,
report text naming the patient), which the default privacy policy must drop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ImplicitVRLittleEndian

from tests.dicom_samples import Patient, instance, sample_path, uid

SNOMED = "http://snomed.info/sct"
LESION, LIVER, KIDNEY, NEOPLASM = "52988006", "10200004", "64033007", "108369006"
ALGORITHM_TYPES = "urn:fhir-bridge:CodeSystem:segment-algorithm-type"
# Words of identifying free text the objects below carry; none of them may reach the store or the API.
FREE_TEXT_SECRETS = ("Quelldorf", "Vexmoor", "Drazhny", "Pemberflint")


@dataclass(frozen=True)
class Study:
    """One patient's CT study with its derived objects (Part-10 bytes)."""

    patient: Patient
    study_uid: str
    ct: bytes
    seg: bytes
    sr: bytes
    ko: bytes
    tracking_uid: str

    @property
    def all(self) -> list[bytes]:
        return [self.ct, self.seg, self.sr, self.ko]


def _bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ct(patient: Patient, number: int) -> bytes:
    return instance(
        "CT_small.dcm",
        patient=patient,
        study_uid=uid(800, number),
        series_uid=uid(800, number, 1),
        sop_uid=uid(800, number, 1, 1),
        AccessionNumber=f"ACC-QUELLDORF-{number}",
    )


def _segmentation(
    ct: Dataset, number: int, structure: hd.sr.CodedConcept, algorithm: hd.seg.SegmentAlgorithmTypeValues, tracking: str
) -> bytes:
    mask = np.zeros((1, ct.Rows, ct.Columns), dtype=bool)
    mask[0, 10:30, 10:30] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion of Quelldorf",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=structure,
        algorithm_type=algorithm,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="nnU-Net", version="2.1", family=codes.cid7162.ArtificialIntelligence
        ),
        anatomic_regions=[codes.SCT.Liver],
        tracking_uid=tracking,
        tracking_id="lesion 1 of Quelldorf",
    )
    seg = hd.seg.Segmentation(
        source_images=[ct],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=uid(800, number, 2),
        series_number=2,
        sop_instance_uid=uid(800, number, 2, 1),
        instance_number=1,
        manufacturer="Hospital AI",
        manufacturer_model_name="liver-lesions",
        software_versions="2.1",
        device_serial_number="SN-1",
        content_creator_name="Drazhny^Vexmoor",
    )
    return _bytes(seg)


def _measurement_report(ct: Dataset, number: int, tracking: str) -> bytes:
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
        graphic_data=np.array([[20.0, 20.0], [25.0, 20.0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(ct),
    )
    diameter = hd.sr.Measurement(
        name=codes.SCT.Diameter,
        value=23.5,
        unit=codes.UCUM.Millimeter,
        derivation=hd.sr.CodedConcept("255573006", "SCT", "Maximum"),
        method=hd.sr.CodedConcept("126410", "DCM", "RECIST 1.1"),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking, identifier="target lesion of Pemberflint"),
        referenced_region=region,
        finding_type=codes.SCT.Lesion,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Liver)],
        measurements=[diameter],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=hd.sr.CodedConcept("C25688", "NCIt", "Status"),
                value=hd.sr.CodedConcept("C41338", "NCIt", "Present"),
            )
        ],
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Drazhny^Vexmoor"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[ct],
        content=report,
        series_number=3,
        series_instance_uid=uid(800, number, 3),
        sop_instance_uid=uid(800, number, 3, 1),
        instance_number=1,
        manufacturer="Hospital AI",
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name="Drazhny^Vexmoor",
        verifying_organization="Vexmoor Clinic",
    )
    return _bytes(sr)


def _key_images(ct: Dataset, number: int) -> bytes:
    selection = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=[ct],
        description="Pemberflint asked for this image",
    )
    ko = hd.ko.KeyObjectSelectionDocument(
        evidence=[ct],
        content=selection,
        series_number=4,
        series_instance_uid=uid(800, number, 4),
        sop_instance_uid=uid(800, number, 4, 1),
        instance_number=1,
        manufacturer="Hospital PACS",
    )
    return _bytes(ko)


@cache
def annotated_study(
    number: int,
    structure: tuple[str, str] = (LESION, "Lesion"),
    algorithm: str = "AUTOMATIC",
) -> Study:
    """A patient's CT with a SEG of ``structure`` in the liver, a TID 1500 SR measuring it, and a KOS."""
    patient = Patient(f"MRN-QUELLDORF-{number}", f"Quelldorf^Vexmoor{number}", "19610203", "F")
    ct_bytes = _ct(patient, number)
    ct = pydicom.dcmread(io.BytesIO(ct_bytes))
    tracking = uid(800, number, 9, 9)
    concept = hd.sr.CodedConcept(structure[0], "SCT", structure[1])
    seg = _segmentation(ct, number, concept, hd.seg.SegmentAlgorithmTypeValues[algorithm], tracking)
    return Study(
        patient,
        uid(800, number),
        ct_bytes,
        seg,
        _measurement_report(ct, number, tracking),
        _key_images(ct, number),
        tracking,
    )


def _as(dataset: Dataset, patient: Patient, study: int, number: int) -> bytes:
    """``dataset`` as ``patient``'s, with UIDs of its own (study ``uid(study, number)``), as a Part-10 file."""
    dataset.PatientID = patient.patient_id
    dataset.PatientName = patient.name
    dataset.PatientBirthDate = patient.birth_date
    dataset.AccessionNumber = f"ACC-QUELLDORF-R{study}-{number}"
    dataset.StudyInstanceUID = uid(study, number)
    dataset.SeriesInstanceUID = uid(study, number, 1)
    dataset.SOPInstanceUID = uid(study, number, 1, 1)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = dataset.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)
    dataset.file_meta = meta
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def real_file(name: str, patient: Patient, number: int) -> bytes:
    """One of pydicom's real files (SR, SEG, RTSTRUCT) as ``patient``'s, in a study of its own."""
    return _as(pydicom.dcmread(sample_path(name), force=True), patient, 810, number)


def text_report(patient: Patient, number: int) -> bytes:
    """pydicom's Comprehensive SR test file, its report text naming the patient (a known leak of SR text)."""
    dataset = pydicom.dcmread(sample_path("test-SR.dcm"))
    first = dataset.ContentSequence[1].ContentSequence[0]
    first.TextValue = "Pemberflint Quelldorf shows a mass of"
    dataset.ContentSequence.append(_text_item("121073", "DCM", "Impression", "Liver lesion, Pemberflint to follow up"))
    return _as(dataset, patient, 820, number)


def _text_item(code: str, scheme: str, meaning: str, text: str) -> Dataset:
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = code, scheme, meaning
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.ConceptNameCodeSequence = [name]
    item.TextValue = text
    return item


def coded_rtstruct(patient: Patient, number: int) -> bytes:
    """pydicom's RTSTRUCT with its body outline coded (RT ROI Identification Code Sequence) as the liver."""
    dataset = pydicom.dcmread(sample_path("rtstruct.dcm"), force=True)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = LIVER, "SCT", "Liver"
    dataset.RTROIObservationsSequence[0].RTROIIdentificationCodeSequence = [code]
    dataset.StructureSetROISequence[0].ROIName = "Liver of Quelldorf"
    return _as(dataset, patient, 830, number)
