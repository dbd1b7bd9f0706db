"""The installed fhir-bridge's version (CapabilityStatement, OpenAPI, Provenance, ``--version``)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    try:
        return version("fhir-bridge")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0"
