"""The FHIR interactions (read, create, update, patch, delete, search, history, batch,
transaction, capabilities), independent of HTTP."""
