"""fhir-bridge: turns hospital DICOM and clinical records into pseudonymised, harvestable FHIR R4.

The public API is small: ``create_app(settings)`` returns the ASGI application (mountable inside
another FastAPI/Starlette service) and ``Settings`` configures it.
"""

from fhir_bridge.api.app import create_app
from fhir_bridge.settings import Settings

__all__ = ["Settings", "create_app"]
