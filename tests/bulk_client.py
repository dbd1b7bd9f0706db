"""A Bulk Data Access client as the IG describes it, step by step, on any httpx-compatible client
(``httpx.Client`` for a live server, Starlette's ``TestClient`` in-process), and test data.

Kick-off with ``Prefer: respond-async`` -> 202 + ``Content-Location``; poll it (202 with
``X-Progress`` and ``Retry-After``) until 200 and the manifest; download every file listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fhir_json import check_response

POLL_LIMIT_S = 60.0
MAX_WAIT_S = 0.2  # Retry-After is honoured up to this, to keep tests quick


@dataclass
class Export:
    status_url: str
    manifest: dict[str, Any]
    progress: list[str] = field(default_factory=list)  # X-Progress values seen while polling
    files: dict[str, list[str]] = field(default_factory=dict)  # url -> lines

    def lines(self, section: str = "output", res_type: str | None = None) -> list[str]:
        return [
            line
            for item in self.manifest.get(section, [])
            if res_type is None or item["type"] == res_type
            for line in self.files[item["url"]]
        ]


def kick_off(client: Any, url: str, *, method: str = "GET", prefer: str = "respond-async", **kwargs: Any) -> Any:
    headers = {"Accept": "application/fhir+json", "Prefer": prefer, **kwargs.pop("headers", {})}
    return client.request(method, url, headers=headers, **kwargs)


def wait(client: Any, status_url: str) -> tuple[Any, list[str]]:
    """Poll until the export is no longer in progress; the last response and the progress seen."""
    deadline = time.monotonic() + POLL_LIMIT_S
    seen: list[str] = []
    while True:
        response = client.get(status_url, headers={"Accept": "application/json"})
        if response.status_code != 202:
            return response, seen
        seen.append(response.headers["X-Progress"])
        assert int(response.headers["Retry-After"]) >= 1
        if time.monotonic() > deadline:
            raise AssertionError(f"the export did not finish in {POLL_LIMIT_S} s: {seen[-3:]}")
        time.sleep(min(MAX_WAIT_S, int(response.headers["Retry-After"])))


def download(client: Any, manifest: dict[str, Any]) -> dict[str, list[str]]:
    files = {}
    for section in ("output", "error", "deleted"):
        for item in manifest.get(section, []):
            response = client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/fhir+ndjson")
            assert int(response.headers["content-length"]) == len(response.content)
            text = response.content.decode("utf-8")
            assert text.endswith("\n")
            files[item["url"]] = text[:-1].split("\n")
            assert len(files[item["url"]]) == item["count"]
    return files


def run_export(client: Any, url: str, **kwargs: Any) -> Export:
    """The whole flow; fails the test at the first step that breaks the IG."""
    response = kick_off(client, url, **kwargs)
    assert response.status_code == 202, response.text
    status_url = response.headers["Content-Location"]
    finished, progress = wait(client, status_url)
    assert finished.status_code == 200, finished.text
    assert finished.headers["content-type"].startswith("application/json")
    manifest = finished.json()
    return Export(status_url, manifest, progress, download(client, manifest))


def create(client: Any, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def read_raw(client: Any, res_type: str, res_id: str, version: str | None = None) -> str:
    """The stored JSON of a resource (or one version), exactly as the server returns it."""
    path = f"/fhir/{res_type}/{res_id}" + (f"/_history/{version}" if version else "")
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.content.decode("utf-8")


def patient(name: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": name}], "gender": "female", "birthDate": "1970"}


def study(patient_id: str, modality: str) -> dict[str, Any]:
    coding = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}
    return {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": f"Patient/{patient_id}"},
        "modality": [coding],
        "series": [{"uid": "2.25.1", "modality": coding}],  # the ``modality`` search parameter reads series
    }


def observation(patient_id: str | None, category: str | None, text: str = "tumour size") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "status": "final", "code": {"text": text}}
    if patient_id:
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
    if category:
        system = "http://terminology.hl7.org/CodeSystem/observation-category"
        resource["category"] = [{"coding": [{"system": system, "code": category}]}]
    return resource


def group(*patient_ids: str) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p}"}} for p in patient_ids],
    }


@dataclass
class Population:
    """Three patients with studies and observations, an Organization, and a Group of two patients."""

    patients: list[str]
    studies: dict[str, list[str]]  # patient id -> ImagingStudy ids
    observations: dict[str, list[str]]  # patient id -> Observation ids
    organization: str
    group: str


def populate(client: Any) -> Population:
    patients = [create(client, patient(n))["id"] for n in ("Ames", "Birk", "Chen")]
    studies = {p: [create(client, study(p, m))["id"] for m in ("CT", "MR")] for p in patients}
    observations = {p: [create(client, observation(p, "laboratory"))["id"]] for p in patients}
    organization = create(client, {"resourceType": "Organization", "name": "Imaging centre"})["id"]
    members = create(client, group(patients[0], patients[1]))["id"]
    return Population(patients, studies, observations, organization, members)


def live(base_url: str) -> httpx.Client:
    """A client for a live server whose FHIR base is ``base_url`` (paths start with /fhir)."""
    return httpx.Client(base_url=base_url.removesuffix("/fhir"), timeout=30, event_hooks={"response": [check_response]})
