"""Realistic DICOM test data made from the files pydicom ships (no download): UIDs and patients rewritten.

pydicom's test files are few and share UIDs; rewriting StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID and the patient attributes turns them into multi-study, multi-series sets. Used
by the tests and by ``benchmarks/dicom_ingest.py``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset

UID_ROOT = "1.2.826.0.1.3680043.10.1234"  # a test root; every generated UID starts with it


def sample_path(name: str) -> str:
    """The path of one of pydicom's bundled test files (test_files or charset_files)."""
    path = get_testdata_file(name, download=False) or next(iter(get_charset_files(name)), None)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with pydicom")
    return str(path)


@cache
def _base(name: str) -> Dataset:
    return pydicom.dcmread(sample_path(name))


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    birth_date: str
    sex: str = "F"
    issuer: str | None = None


def uid(*parts: int) -> str:
    return ".".join([UID_ROOT, *(str(p) for p in parts)])


def instance(
    base: str,
    *,
    patient: Patient,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    series_number: int = 1,
    instance_number: int = 1,
    **attributes: object,
) -> bytes:
    """A Part-10 file: ``base`` with new UIDs, patient and any other attributes (by keyword)."""
    dataset = _base(base)
    dataset.PatientID = patient.patient_id
    dataset.PatientName = patient.name
    dataset.PatientBirthDate = patient.birth_date
    dataset.PatientSex = patient.sex
    if patient.issuer:
        dataset.IssuerOfPatientID = patient.issuer
    elif "IssuerOfPatientID" in dataset:
        del dataset.IssuerOfPatientID
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.SOPInstanceUID = sop_uid
    dataset.SeriesNumber = series_number
    dataset.InstanceNumber = instance_number
    if dataset.file_meta is not None and "MediaStorageSOPInstanceUID" in dataset.file_meta:
        dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def study_set(
    studies: int = 2, series: int = 2, instances: int = 3, bases: tuple[str, ...] = ("MR_small.dcm", "CT_small.dcm")
) -> Iterator[tuple[str, bytes]]:
    """(relative path, file bytes) of ``studies`` x ``series`` x ``instances`` instances, a patient per study."""
    for s in range(1, studies + 1):
        patient = Patient(f"PID-{s:05d}", f"Testperson^Study{s}", f"19{40 + s % 50:02d}0{1 + s % 9}1{s % 10}")
        for r in range(1, series + 1):
            base = bases[(s + r) % len(bases)]
            for i in range(1, instances + 1):
                data = instance(
                    base,
                    patient=patient,
                    study_uid=uid(s),
                    series_uid=uid(s, r),
                    sop_uid=uid(s, r, i),
                    series_number=r,
                    instance_number=i,
                    AccessionNumber=f"ACC{s:06d}",
                )
                yield f"study{s:03d}/series{r:02d}/{i:04d}.dcm", data


def write_tree(root: Path, files: Iterator[tuple[str, bytes]]) -> list[Path]:
    written = []
    for relative, data in files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def multipart(parts: list[bytes], boundary: str = "fhir-bridge-test-boundary", content_length: bool = False) -> bytes:
    """A STOW-RS body: one application/dicom part per item (CRLF line ends, closing delimiter)."""
    chunks = []
    for part in parts:
        headers = "Content-Type: application/dicom\r\n"
        if content_length:
            headers += f"Content-Length: {len(part)}\r\n"
        chunks.append(f"--{boundary}\r\n{headers}\r\n".encode() + part + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)
