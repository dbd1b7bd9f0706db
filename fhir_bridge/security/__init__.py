"""Access control: SMART v2 scopes, bearer-token verification and the built-in token endpoint.

Data flows one way: ``scopes`` (what a token grants) and ``policy`` (what a request needs) are
pure; ``tokens`` verifies tokens into a ``Principal``; ``clients`` keeps the registered backend
clients and issues tokens to them. The HTTP layer (``fhir_bridge.api.access``) ties them together.
"""
