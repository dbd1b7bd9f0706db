"""The audit trail: one record per request that reads or writes patient-level data, served as AuditEvent.

Records live in their own append-only table (``audit_event``), written in their own transaction
before the response leaves (``fhir_bridge.api.access``), so a failed request is recorded too.
"""
