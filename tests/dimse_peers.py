"""Test helpers for the DICOM listener: a listener on a free port, the real peers (dcmtk, Orthanc), results.

The peers are Debian packages (``dcmtk``, ``orthanc``); a test that needs one skips when its binary is
missing, except under CI (``CI=true``), where it fails: CI installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_bridge import Settings, create_app
from fhir_bridge.listeners.dimse import DimseConfig, DimseListener, parse_callers
from tests.conftest import TEST_PSEUDONYM_KEY, free_port

AE_TITLE = "FHIR_BRIDGE"
IN_CI = os.environ.get("CI") == "true"


def need(binary: str) -> str:
    """The path of a peer's binary; skip (or fail, under CI) when it is not installed."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (Debian package {'orthanc' if binary == 'Orthanc' else 'dcmtk'})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def listening(
    database_url: str, spool: Path, callers: tuple[str, ...] = ("*@127.0.0.1",), **config: Any
) -> Iterator[tuple[DimseListener, FastAPI]]:
    """The app (for reading results) and a started listener writing through its ingest and audit trail."""
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    listener = DimseListener(
        DimseConfig(AE_TITLE, "127.0.0.1", free_port(), parse_callers(list(callers)), spool, **config),
        app.state.services.dicom_ingest,
        app.state.services.audit_log.record,
    )
    listener.start()
    try:
        yield listener, app
    finally:
        listener.stop()
        app.state.services.close()


def studies(app: FastAPI) -> dict[str, dict]:
    """The stored ImagingStudy resources by their first identifier's value (urn:oid:<study uid>)."""
    with TestClient(app) as client:
        bundle = client.get("/fhir/ImagingStudy", params={"_count": 1000}).json()
    return {e["resource"]["identifier"][0]["value"]: e["resource"] for e in bundle.get("entry", [])}


def instance_uids(app: FastAPI) -> set[str]:
    return {i["uid"] for study in studies(app).values() for s in study["series"] for i in s["instance"]}


def fhir_get(app: FastAPI, path: str, **params: Any) -> dict:
    with TestClient(app) as client:
        return client.get(path, params=params).json()


def dimse_records(app: FastAPI) -> list[dict]:
    """The audit trail's records of DICOM associations (AuditEvent.type from DCM), oldest first."""
    bundle = fhir_get(app, "/fhir/AuditEvent", _count=1000)
    events = [e["resource"] for e in bundle.get("entry", [])]
    return [e for e in events if e["type"]["system"] == "http://dicom.nema.org/resources/ontology/DCM"]


@contextmanager
def orthanc(folder: Path, modalities: dict[str, list[Any]]) -> Iterator[str]:
    """Orthanc in a subprocess on free ports with a generated configuration; yields its REST base URL."""
    binary = need("Orthanc")
    http_port, dicom_port = free_port(), free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "fhir-bridge-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": modalities,
        "Plugins": [],
        "StableAge": 1,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/system", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not start: " + (folder / "orthanc.log").read_text()[-2000:])
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
