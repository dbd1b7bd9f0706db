"""fhir-bridge's errors: ``FhirError`` (a request that cannot be carried out: an HTTP status and an
OperationOutcome) and ``ConfigurationError`` (a configuration the service refuses to start with)."""

from __future__ import annotations

from typing import Any


class ConfigurationError(ValueError):
    """A setting that makes the service unsafe or impossible to run; the message says what to change."""


class FhirError(Exception):
    """A request that cannot be carried out; ``expression`` names the offending element or parameter."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str = "processing",
        expression: str | list[str] | None = None,
        headers: dict[str, str] | None = None,
        issues: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code
        self.expression = [expression] if isinstance(expression, str) else list(expression or [])
        self.headers = headers or {}
        self.issues = issues or []  # OperationOutcome issues, one per problem, when there are several

    def outcome(self) -> dict[str, Any]:
        if self.issues:
            return {"resourceType": "OperationOutcome", "issue": self.issues}
        return operation_outcome(self.diagnostics, code=self.code, expression=self.expression)


def operation_outcome(
    diagnostics: str,
    *,
    severity: str = "error",
    code: str = "processing",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
