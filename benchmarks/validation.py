"""Cost per resource of validating as FHIR R4 4.0.1 (``validate_resource``), on the hot path of every write.

    .venv/bin/python -m benchmarks.validation
    .venv/bin/python -m benchmarks.validation --package hl7.fhir.r4.examples-4.0.1.tgz   # + every resource of it

Each figure is CPU microseconds per resource, next to baselines measured in the same run on the same resources:
``parse`` is ``orjson.loads`` of the resource's bytes (what every write pays before validating), and ``R4B``
is fhir.resources' R4B pydantic models (the validator used before), when that package is installed.
Resources: a Patient and an ImagingStudy as the bridge writes them (the store_api benchmark's), the spec's
ImagingStudy examples, and the 733 spec examples shipped with the tests.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.store_api import BUNDLE_PATIENTS, Synthesizer
from fhir_bridge.errors import FhirError
from fhir_bridge.spec.validation import validate_resource
from fhir_bridge.spec.validator import validator

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "tests" / "data" / "r4-examples" / "examples.json.gz"


def _r4b() -> Callable[[dict[str, Any]], Any] | None:
    """The previous validator, fhir.resources' R4B models, if installed (it is no longer a dependency)."""
    try:
        from fhir.resources.R4B import get_fhir_model_class  # type: ignore[import-not-found]
    except ImportError:
        return None

    def validate(resource: dict[str, Any]) -> Any:
        try:
            return get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception:  # an R4 type R4B lacks, or an R4B refusal: timed all the same
            return None

    return validate


def _valid(resource: dict[str, Any]) -> bool:
    try:
        validate_resource(resource)
    except FhirError:
        return False
    return True


def per_resource(function: Callable[[Any], Any], items: list[Any], seconds: float) -> float:
    """CPU microseconds per item (process time: a shared, loaded machine skews it less than wall time):
    whole passes over ``items`` for at least ``seconds``, best of three."""
    best = float("inf")
    for _ in range(3):
        passes, started = 0, time.process_time()
        while True:
            for item in items:
                function(item)
            passes += 1
            elapsed = time.process_time() - started
            if elapsed >= seconds / 3:
                break
        best = min(best, elapsed / (passes * len(items)))
    return best * 1e6


def sets() -> dict[str, list[dict[str, Any]]]:
    synthesizer = Synthesizer(1)
    patient = synthesizer.patient()
    examples = json.loads(gzip.decompress(EXAMPLES.read_bytes()))
    valid = [r for r in examples.values() if _valid(r)]
    return {
        "Patient (bridge-shaped)": [patient],
        "ImagingStudy (bridge-shaped)": [synthesizer.study("Patient/" + "1" * 8)],
        "ImagingStudy (spec examples)": [r for r in valid if r["resourceType"] == "ImagingStudy"],
        f"spec examples ({len(valid)})": valid,
    }


def run(seconds: float) -> list[dict[str, Any]]:
    validator()  # compiled once per process, outside the timings
    old = _r4b()
    rows = []
    for name, items in sets().items():
        raw = [orjson.dumps(r) for r in items]
        row = {
            "set": name,
            "resources": len(items),
            "validate_us": per_resource(validate_resource, items, seconds),
            "parse_us": per_resource(orjson.loads, raw, seconds),
            "r4b_us": per_resource(old, items, seconds) if old else None,
        }
        rows.append(row)
    return rows


def transaction_share(bundles: int) -> dict[str, float]:
    """CPU per resource of whole transactions (store_api's Bundles of 50 Patients + 50 ImagingStudies, posted
    in process to the real app on a SQLite file) and of validate_resource on the same resources."""
    from fastapi.testclient import TestClient

    from fhir_bridge.api.app import create_app
    from fhir_bridge.settings import Settings

    synthesizer = Synthesizer(7)
    bodies = [synthesizer.transaction(BUNDLE_PATIENTS) for _ in range(bundles + 2)]
    raw = [orjson.dumps(body) for body in bodies]
    headers = {"Content-Type": "application/fhir+json"}
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            database_url=f"sqlite:///{os.path.join(directory, 'store.db')}",
            auth="none",
            pseudonym_key="0" * 64,
            pseudonym_key_file=None,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            for body in raw[:2]:  # warm-up
                client.post("/fhir", content=body, headers=headers).raise_for_status()
            started = time.process_time()
            for body in raw[2:]:
                client.post("/fhir", content=body, headers=headers).raise_for_status()
            transaction = time.process_time() - started
        app.state.services.close()
    resources = [entry["resource"] for body in bodies[2:] for entry in body["entry"]]
    started = time.process_time()
    for resource in resources:
        validate_resource(resource)
    validation = time.process_time() - started
    return {"transaction_us": transaction / len(resources) * 1e6, "validate_us": validation / len(resources) * 1e6}


def check_package(package: Path) -> None:
    """Validate every resource of the package (5,306 for hl7.fhir.r4.examples 4.0.1): rate and the invalid ones."""
    with tarfile.open(package) as archive:
        members = [m for m in archive.getmembers() if m.name.endswith(".json") and not m.name.endswith("package.json")]
        loaded = [(Path(m.name).name, orjson.loads(archive.extractfile(m).read())) for m in members]  # type: ignore[union-attr]
    started = time.perf_counter()
    invalid = {}
    for name, resource in loaded:
        issues = validator().validate(resource)
        if issues and issues[0].severity == "error":
            invalid[name] = f"{issues[0].expression}: {issues[0].message}"
    elapsed = time.perf_counter() - started
    size = sum(len(orjson.dumps(r)) for _, r in loaded) / 1e6
    print(f"\n{package.name}: {len(loaded)} resources ({size:.0f} MB) in {elapsed:.1f} s, {len(invalid)} invalid:")
    for name, problem in sorted(invalid.items()):
        print(f"  {name}: {problem[:150]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per figure (default 1)")
    parser.add_argument("--package", type=Path, help="also validate every resource of this npm package (.tgz)")
    parser.add_argument("--transactions", type=int, default=20, help="transaction Bundles of 100 to time (0: none)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one line of JSON")
    options = parser.parse_args(argv)
    rows = run(options.seconds)
    print(f"{'resources':32} {'n':>5} {'validate':>10} {'parse':>8} {'R4B':>9} {'val/parse':>10} {'R4B/val':>8}")
    for row in rows:
        r4b = row["r4b_us"]
        print(
            f"{row['set']:32} {row['resources']:5d} {row['validate_us']:8.1f}us {row['parse_us']:6.1f}us "
            + (f"{r4b:7.1f}us" if r4b else "      n/a")
            + f" {row['validate_us'] / row['parse_us']:10.1f}"
            + (f" {r4b / row['validate_us']:8.1f}" if r4b else "      n/a")
        )
    share = transaction_share(options.transactions) if options.transactions else None
    if share:
        print(
            f"\ntransactions (store_api's, in process, SQLite): {share['transaction_us']:.0f}us CPU per resource, "
            f"of which validate_resource {share['validate_us']:.1f}us "
            f"({share['validate_us'] / share['transaction_us']:.0%}); {1e6 / share['transaction_us']:,.0f} resources "
            "per CPU-second (the HTTP client included)"
        )
    if options.package:
        check_package(options.package)
    if options.json:
        print(json.dumps({"validation": rows, "transaction": share}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
