"""The R4 4.0.1 specification's examples the validation tests run on (tests/data/r4-examples/).

``examples.json.gz`` maps each file name of the npm package ``hl7.fhir.r4.examples`` 4.0.1 to its resource,
for every example of at most 100 KB that is not a conformance definition, and the three smallest of each
conformance resource type (StructureDefinition, ValueSet, SearchParameter, ...). Left out: 21 larger
examples (mostly Bundles of all definitions, 2 to 34 MB each) and the other definitions. Regenerate with
``python -m tests.r4_examples hl7.fhir.r4.examples-4.0.1.tgz`` after ``npm pack hl7.fhir.r4.examples@4.0.1``.
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).parent / "data" / "r4-examples" / "examples.json.gz"
MAX_EXAMPLE_BYTES = 100 * 1024
DEFINITIONS_PER_TYPE = 3
CONFORMANCE_TYPES = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "ExampleScenario",
        "GraphDefinition",
        "ImplementationGuide",
        "MessageDefinition",
        "NamingSystem",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "ValueSet",
    }
)


@cache
def r4_examples() -> dict[str, dict[str, Any]]:
    """File name (e.g. ``Patient-example.json``) -> resource, in file-name order."""
    return json.loads(gzip.decompress(FIXTURE.read_bytes()))


def derive(package: Path) -> dict[str, dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    definitions: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    with tarfile.open(package) as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if not name.endswith(".json") or name == "package.json" or member.size > MAX_EXAMPLE_BYTES:
                continue
            resource = json.load(archive.extractfile(member))  # type: ignore[arg-type]
            if resource["resourceType"] in CONFORMANCE_TYPES:
                definitions.setdefault(resource["resourceType"], []).append((member.size, name, resource))
            else:
                chosen[name] = resource
    for candidates in definitions.values():
        for _, name, resource in sorted(candidates, key=lambda c: (c[0], c[1]))[:DEFINITIONS_PER_TYPE]:
            chosen[name] = resource
    return dict(sorted(chosen.items()))


if __name__ == "__main__":
    examples = derive(Path(sys.argv[1]))
    compact = json.dumps(examples, separators=(",", ":"), sort_keys=True).encode("utf-8")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_bytes(gzip.compress(compact, 9, mtime=0))
    print(f"{len(examples)} examples, {FIXTURE.stat().st_size // 1024} KB: {FIXTURE}")
