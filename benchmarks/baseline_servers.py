"""The throughput benchmark's baselines, each run as ``python benchmarks/baseline_servers.py KIND DATA PORT``.

- ``floor``: a bare FastAPI app answering ``GET /fhir/Patient/{id}`` with the stored JSON of that
  Patient (bytes kept in a dict, no database, no validation): what the HTTP stack itself costs.
- ``fhirstarter``: fhirstarter (PyPI) serving the same Patients from a Python dict, read and
  ``Patient?identifier=``, as its own example does (each answer validated by its fhir.resources model);
  it serves at its root (``/Patient/{id}``), the others under ``/fhir``.
- ``inmemory``: a minimal in-memory FHIR app on plain FastAPI, read and identifier search, for machines
  where fhirstarter cannot be installed.

This file imports nothing from fhir-bridge: fhirstarter pins an older FastAPI than fhir-bridge uses,
so it runs in a virtual environment of its own (see ``benchmarks/throughput.py``).
``DATA`` is a JSON file: ``{"patients": {id: stored JSON text}}``.
"""

# no `from __future__ import annotations`: fhirstarter reads the handlers' annotations at run time

import json
import sys
from typing import Any

import uvicorn


def _load(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as file:
        return json.load(file)["patients"]


def _by_identifier(patients: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for text in patients.values():
        resource = json.loads(text)
        for identifier in resource.get("identifier", []):
            found.setdefault(f"{identifier.get('system', '')}|{identifier.get('value', '')}", []).append(text)
    return found


def floor(patients: dict[str, str]) -> Any:
    from fastapi import FastAPI, Response

    app = FastAPI()
    stored = {key: value.encode() for key, value in patients.items()}

    @app.get("/fhir/Patient/{id_}")
    async def read(id_: str) -> Response:
        return Response(stored[id_], media_type="application/fhir+json")

    return app


def inmemory(patients: dict[str, str]) -> Any:
    """Read and identifier search over dicts: each answer parsed and serialised, no storage."""
    from fastapi import FastAPI, HTTPException, Response

    app = FastAPI()
    index = _by_identifier(patients)

    @app.get("/fhir/Patient/{id_}")
    async def read(id_: str) -> Response:
        if id_ not in patients:
            raise HTTPException(404)
        return Response(json.dumps(json.loads(patients[id_])), media_type="application/fhir+json")

    @app.get("/fhir/Patient")
    async def search(identifier: str = "") -> Response:
        entries = [{"resource": json.loads(text)} for text in index.get(identifier, [])]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        return Response(json.dumps(bundle), media_type="application/fhir+json")

    return app


def fhirstarter(patients: dict[str, str]) -> Any:
    from fhir.resources.bundle import Bundle
    from fhir.resources.patient import Patient
    from fhirstarter import FHIRProvider, FHIRStarter, InteractionContext
    from fhirstarter.exceptions import FHIRResourceNotFoundError

    index = _by_identifier(patients)
    provider = FHIRProvider()

    @provider.read(Patient)
    async def patient_read(context: InteractionContext, id_: str) -> Patient:
        text = patients.get(id_)
        if text is None:
            raise FHIRResourceNotFoundError
        return Patient.model_validate_json(text)

    @provider.search_type(Patient)
    async def patient_search_type(context: InteractionContext, identifier: str | None) -> Bundle:
        found = [json.loads(text) for text in index.get(identifier or "", [])]
        return Bundle(type="searchset", total=len(found), entry=[{"resource": r} for r in found] if found else None)

    app = FHIRStarter(title="fhirstarter baseline")  # serves at its root: /Patient/{id}
    app.add_providers(provider)
    return app


def main() -> None:
    kind, data, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    patients = _load(data)
    app = {"floor": floor, "fhirstarter": fhirstarter, "inmemory": inmemory}[kind](patients)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
