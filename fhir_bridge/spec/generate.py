"""Regenerate the FHIR definitions shipped in ``fhir_bridge/spec/data``.

The data comes from the HL7 FHIR R4 4.0.1 packages ``hl7.fhir.r4.examples`` (the definitions and
examples) and ``hl7.fhir.r4.expansions`` (the value sets' expansions), npm registry, licence CC0-1.0.
Run ``python -m fhir_bridge.spec.generate EXAMPLES.tgz EXPANSIONS.tgz`` after
``npm pack hl7.fhir.r4.examples@4.0.1 hl7.fhir.r4.expansions@4.0.1``; the output is committed so
that the server never needs the network.
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path

from fhir_bridge.spec.generate_structure import derive_structure

DATA_DIR = Path(__file__).parent / "data"
SEARCH_PARAMETER_FIELDS = ("code", "type", "base", "expression", "target", "modifier", "comparator", "url", "component")


def _read_json_members(archive: tarfile.TarFile, prefix: str) -> list[dict]:
    members = [m for m in archive.getmembers() if Path(m.name).name.startswith(prefix) and m.name.endswith(".json")]
    found = []
    for member in sorted(members, key=lambda m: m.name):
        content = archive.extractfile(member)
        if content is not None:
            found.append(json.load(content))
    return found


def generate(package: Path, expansions_package: Path) -> None:
    with tarfile.open(package) as archive:
        bundle = next(d for d in _read_json_members(archive, "Bundle-searchParams"))
        definitions = _read_json_members(archive, "StructureDefinition-")
        compartments = _read_json_members(archive, "CompartmentDefinition-")
        value_sets = _read_json_members(archive, "ValueSet-")
        code_systems = _read_json_members(archive, "CodeSystem-")
    with tarfile.open(expansions_package) as archive:
        expansions = _read_json_members(archive, "ValueSet-")
    search_parameters = [
        {field: entry["resource"][field] for field in SEARCH_PARAMETER_FIELDS if field in entry["resource"]}
        for entry in bundle["entry"]
    ]
    all_definitions = definitions
    definitions = [
        d
        for d in all_definitions
        if d.get("kind") == "resource" and d.get("derivation") == "specialization" and not d.get("abstract")
    ]
    resource_types = sorted(d["type"] for d in definitions)
    elements = {d["type"]: _top_level_elements(d) for d in definitions if d["type"] in resource_types}
    choices = sorted(
        {
            element["path"].split(".")[-1][:-3]
            for d in all_definitions
            if d.get("derivation") == "specialization" and d.get("kind") in ("resource", "complex-type")
            for element in d.get("snapshot", {}).get("element", [])
            if element["path"].endswith("[x]")
        }
    )
    patient_compartment = next(c for c in compartments if c.get("code") == "Patient")
    compartment = {r["code"]: r.get("param", []) for r in patient_compartment["resource"]}
    DATA_DIR.mkdir(exist_ok=True)
    _write(DATA_DIR / "search-parameters.json", search_parameters)
    _write(DATA_DIR / "resource-types.json", resource_types)
    _write(DATA_DIR / "patient-compartment.json", compartment)
    _write(DATA_DIR / "elements.json", elements)
    _write(DATA_DIR / "choice-elements.json", choices)
    structure = derive_structure(all_definitions, value_sets, code_systems, expansions)
    # gzip without a timestamp, so that regenerating unchanged data changes no byte
    compact = json.dumps(structure, separators=(",", ":"), sort_keys=True).encode("utf-8")
    (DATA_DIR / "structure.json.gz").write_bytes(gzip.compress(compact, 9, mtime=0))


def _top_level_elements(definition: dict) -> dict[str, list[str]]:
    """The summary, mandatory and single-valued top-level elements of a resource (``_summary``,
    ``_elements``, and the search planner)."""
    summary, mandatory, single = [], [], []
    for element in definition["snapshot"]["element"]:
        path = element["path"].split(".")
        if len(path) != 2:
            continue
        name = path[1]
        if element.get("isSummary"):
            summary.append(name)
        if element.get("min", 0) > 0:
            mandatory.append(name)
        if element.get("max") == "1":
            single.append(name)
    return {"summary": summary, "mandatory": mandatory, "single": single}


def _write(path: Path, data: object, indent: int | None = 1) -> None:
    separators = None if indent else (",", ":")
    path.write_text(json.dumps(data, indent=indent, sort_keys=True, separators=separators) + "\n", encoding="utf-8")


if __name__ == "__main__":
    generate(Path(sys.argv[1]), Path(sys.argv[2]))
