"""The data the web UI's tests look at, pushed the way a site's senders push it.

- STOW-RS: studies 1-3 of ``dicom_samples.study_set`` (2 series x 2 instances each) plus one part
  that is no DICOM (a failure with its reason), and an annotated CT (CT + SEG + TID 1500 SR);
- folder: studies 4-5 of the same set, through the folder ingest;
- clinical: the shipped example CSVs of ``cancer-diagnosis`` and ``radiology-report`` (patients
  PID-00001 and PID-00002: conditions and reports of studies 1 and 2).

Original names (``Testperson``, ``Quelldorf``) and patient ids (``PID-``, ``MRN-``) never reach a page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.services import Services
from tests.annotation_samples import annotated_study
from tests.dicom_samples import multipart, study_set, write_tree

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
MAPPINGS = Path(__file__).parent.parent / "mappings" / "examples"
IDENTIFYING = ("Testperson", "Quelldorf", "PID-0", "MRN-QUELLDORF")
NOT_DICOM = b"this part is a text file, not DICOM"


def load(client: TestClient, services: Services, folder: Path) -> None:
    files = dict(study_set(studies=5, series=2, instances=2))
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
        content=multipart([study.ct, study.seg, study.sr]),
        headers={"Content-Type": STOW_TYPE, "User-Agent": "ai-node/2.1"},
    )
    assert answer.status_code == 200, answer.text
    write_tree(folder, ((p, d) for p, d in files.items() if p.startswith(("study004", "study005"))))
    summary = ingest_files(services.dicom_ingest, [folder])
    assert not summary.failed
    for mapping in ("cancer-diagnosis", "radiology-report"):
        answer = client.post(
            "/ingest/clinical",
            params={"mapping": mapping},
            content=(MAPPINGS / f"{mapping}.csv").read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text
