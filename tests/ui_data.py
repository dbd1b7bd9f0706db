"""The data the web UI's tests look at, pushed the way a site's senders push it.

- STOW-RS: studies 1-3 (2 series x 2 instances each: MR of the breast or prostate, CT of the chest,
  acquired January to May 2024) plus one part that is no DICOM (a failure with its reason), and an
  annotated CT (CT + SEG + TID 1500 SR);
- folder: study 4, through the folder ingest;
- DIMSE: study 5, sent by a pynetdicom C-STORE SCU (AE title MODALITY1) to the DICOM listener, and an
  association of a caller not on its allow-list (STRANGER), refused;
- clinical: the shipped example CSVs of ``cancer-diagnosis`` and ``radiology-report`` (patients
  PID-00001 and PID-00002: conditions and reports of studies 1 and 2), the first with a third record
  that fails (a date and an ICD-10 code that are none).

Original names (``Testperson``, ``Quelldorf``) and patient ids (``PID-``, ``MRN-``) never reach a page.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from fastapi.testclient import TestClient
from pynetdicom import AE

from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.listeners.dimse import DimseConfig, DimseListener, parse_callers
from fhir_bridge.services import Services
from tests.annotation_samples import annotated_study
from tests.conftest import free_port
from tests.dicom_samples import Patient, instance, multipart, uid, write_tree

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
MAPPINGS = Path(__file__).parent.parent / "mappings" / "examples"
IDENTIFYING = ("Testperson", "Quelldorf", "PID-0", "MRN-QUELLDORF")
NOT_DICOM = b"this part is a text file, not DICOM"
BAD_DIAGNOSIS = b"PID-00003,Testperson^Study3,D-0003,31/31/2024,XX,,,,,Unclear,,,,,,,,,\n"  # fails: date, ICD-10


PATIENTS = [  # (sex, birth date, first series' body part, study date)
    ("F", "19600312", "BREAST", "20240115"),
    ("F", "19620704", "BREAST", "20240203"),
    ("F", "19640101", "BREAST", "20240220"),
    ("M", "19750923", "PROSTATE", "20240411"),
    ("M", "19900210", "PROSTATE", "20240530"),
]


def studies() -> dict[str, bytes]:
    """(path, Part-10 bytes) of studies 1-5: an MR series of the body part and a CT of the chest each."""
    files = {}
    for s, (sex, born, body_part, day) in enumerate(PATIENTS, start=1):
        patient = Patient(f"PID-{s:05d}", f"Testperson^Study{s}", born, sex)
        for r, (base, part) in enumerate((("MR_small.dcm", body_part), ("CT_small.dcm", "CHEST")), start=1):
            for i in (1, 2):
                files[f"study{s:03d}/series{r:02d}/{i:04d}.dcm"] = instance(
                    base,
                    patient=patient,
                    study_uid=uid(s),
                    series_uid=uid(s, r),
                    sop_uid=uid(s, r, i),
                    series_number=r,
                    instance_number=i,
                    AccessionNumber=f"ACC{s:06d}",
                    BodyPartExamined=part,
                    StudyDate=day,
                    SeriesDate=day,
                    StudyDescription=f"{'MR ' + body_part.lower()} and CT chest",
                )
    return files


def _dated(data: bytes, day: str) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.StudyDate = day
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def load(client: TestClient, services: Services, folder: Path) -> None:
    files = studies()
    stowed = [data for path, data in files.items() if path.startswith(("study001", "study002", "study003"))]
    answer = client.post(
        "/dicomweb/studies",
        content=multipart([*stowed, NOT_DICOM]),
        headers={"Content-Type": STOW_TYPE, "User-Agent": "test-pacs/1.0"},
    )
    assert answer.status_code == 202, answer.text  # stored, one part failed
    study = annotated_study(1)
    answer = client.post(
        "/dicomweb/studies",
        content=multipart([_dated(part, "20240315") for part in (study.ct, study.seg, study.sr)]),
        headers={"Content-Type": STOW_TYPE, "User-Agent": "ai-node/2.1"},
    )
    assert answer.status_code == 200, answer.text
    write_tree(folder, ((p, d) for p, d in files.items() if p.startswith("study004")))
    summary = ingest_files(services.dicom_ingest, [folder])
    assert not summary.failed
    _send_by_dimse([d for p, d in files.items() if p.startswith("study005")], services, folder.parent / "spool")
    for mapping, extra in (("cancer-diagnosis", BAD_DIAGNOSIS), ("radiology-report", b"")):
        answer = client.post(
            "/ingest/clinical",
            params={"mapping": mapping},
            content=(MAPPINGS / f"{mapping}.csv").read_bytes() + extra,
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["summary"]["failed"] == (1 if extra else 0)


def _send_by_dimse(instances: list[bytes], services: Services, spool: Path) -> None:
    """C-STORE ``instances`` to a DICOM listener writing through ``services`` (committed when it stops)."""
    config = DimseConfig("FHIR_BRIDGE", "127.0.0.1", free_port(), parse_callers(["MODALITY1@127.0.0.1"]), spool)
    listener = DimseListener(config, services.dicom_ingest, services.audit_log.record)
    listener.start()
    try:
        datasets = [pydicom.dcmread(io.BytesIO(data)) for data in instances]
        sender = AE("MODALITY1")
        for dataset in datasets:
            sender.add_requested_context(dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])
        association = sender.associate("127.0.0.1", config.port, ae_title="FHIR_BRIDGE")
        assert association.is_established
        assert all(association.send_c_store(dataset).Status == 0 for dataset in datasets)
        association.release()
        stranger = AE("STRANGER")  # not on the allow-list: refused, and the refusal is in the trail
        stranger.add_requested_context(datasets[0].SOPClassUID, [datasets[0].file_meta.TransferSyntaxUID])
        assert not stranger.associate("127.0.0.1", config.port, ae_title="FHIR_BRIDGE").is_established
    finally:
        listener.stop()
