"""Benchmarks of fhir-bridge; run one with ``python -m benchmarks.<name>`` (see README.md)."""
