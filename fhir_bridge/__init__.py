"""fhir-bridge: turns hospital DICOM and clinical records into pseudonymised, harvestable FHIR R4.

The public API is small: ``create_app(settings)`` returns the ASGI application (mountable inside
another FastAPI/Starlette service) and ``Settings`` configures it. Both are imported on first use,
so that light parts (e.g. the DICOM header reader in the CLI's worker processes) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_bridge.api.app import create_app
    from fhir_bridge.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from fhir_bridge.api.app import create_app

        return create_app
    if name == "Settings":
        from fhir_bridge.settings import Settings

        return Settings
    raise AttributeError(f"module 'fhir_bridge' has no attribute {name!r}")
