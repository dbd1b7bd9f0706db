"""The data steward's web UI at ``/ui``: server-rendered pages (Jinja2) over the services.

An edge like ``api/``: it reads through the FHIR interactions (every search authorised as the
viewer's search, with the viewer's SMART scopes), the audit trail and the catalogue, and writes
nothing but audit records of what it showed. Templates, the style sheet and the charts (inline
SVG drawn here) ship inside the package: no JavaScript, no build step, no CDN.
"""

from fhir_bridge.ui.routes import PREFIX, router

__all__ = ["PREFIX", "router"]
