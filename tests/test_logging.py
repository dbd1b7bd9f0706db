"""Logs: one JSON object per line for the app's and uvicorn's events, with the request id, and no patient data.

A real server process runs a realistic workload (a STOW-RS push of a study with its SEG and SR, a
clinical upload, searches by identifier and name, refused and failing requests) at the most verbose
level, and the captured log is scanned for the names and identifiers the workload used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.annotation_samples import annotated_study
from tests.conftest import free_port
from tests.dicom_samples import multipart
from tests.server_process import first_answer

STOW = 'multipart/related; type="application/dicom"; boundary=fhir-bridge-test-boundary'
EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"


def test_a_realistic_workload_logs_json_lines_with_request_ids_and_no_patient_data(
    database_url: str, tmp_path: Path
) -> None:
    study = annotated_study(7)  # Quelldorf^Vexmoor7, MRN-QUELLDORF-7, born 1961-02-03
    identifying = [study.patient.patient_id, "Quelldorf", "Vexmoor", "19610203", "1961-02-03"]
    identifying += ["PID-00001", "PID-00002", "Testperson", "Study1", "19410111", "1941-01-11", "11.01.1941"]
    port = free_port()
    environment = {**os.environ, "FHIR_BRIDGE_LOG_FORMAT": "json", "FHIR_BRIDGE_LOG_LEVEL": "debug"}
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "fhir_bridge", "serve", "--port", str(port), "--database-url", database_url],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        first_answer(f"{base}/healthz", server, log_path.read_text)
        with httpx.Client(base_url=base, timeout=60) as client:
            stored = client.post("/dicomweb/studies", content=multipart(study.all), headers={"Content-Type": STOW})
            assert stored.status_code == 200
            for mapping, name in (("cancer-diagnosis", "cancer-diagnosis.csv"), ("patient-demographics", None)):
                body = (EXAMPLES / (name or f"{mapping}.csv")).read_bytes()
                answer = client.post(
                    "/ingest/clinical", params={"mapping": mapping}, content=body, headers={"Content-Type": "text/csv"}
                )
                assert answer.status_code == 200
            broken = (
                b"patient_id,family_name,given_name,birth_date,sex,deceased\nPID-00002,Testperson,X,not-a-date,Q,N\n"
            )
            csv = {"Content-Type": "text/csv"}
            client.post("/ingest/clinical", params={"mapping": "patient-demographics"}, content=broken, headers=csv)
            searches = [
                ("/fhir/Patient", {"identifier": "PID-00001"}),
                ("/fhir/Patient", {"identifier": f"urn:fhir-bridge:patient-id|{study.patient.patient_id}"}),
                ("/fhir/Patient", {"name": "Testperson", "birthdate": "1941-01-11"}),
                ("/fhir/Condition", {"subject:Patient.identifier": "PID-00001"}),
                ("/fhir/Patient", {"birthdate": "Quelldorf-PID-00001"}),  # 400: the value is in the answer only
                ("/fhir/Patient/PID-00001", {}),  # 404
            ]
            for path, parameters in searches:
                client.get(path, params=parameters)
            client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Testperson"}], "x": 1})
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(event) for event in events)
    assert any(event["logger"].startswith("uvicorn") for event in events)  # uvicorn's lines, in the same format
    ingest_lines = [e for e in events if e["message"].startswith("DICOM ingest (STOW-RS)")]
    assert ingest_lines and ingest_lines[0]["request_id"] == stored.headers["x-request-id"]
    for value in identifying:
        assert value not in text, f"{value} is in the log:\n" + "\n".join(line for line in lines if value in line)
