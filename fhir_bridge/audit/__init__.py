"""The audit trail: one record per request that reads or writes patient-level data, per Bundle entry,
per DICOM association and per administrative command, served as AuditEvent.

Records live in their own append-only table (``audit_event``), written before the response leaves
(``fhir_bridge.api.access``), so a failed request is recorded too. One writer per process commits the
records of concurrent requests together (``audit.commit``); each record is chained to the one before
by a keyed hash (``audit.chain``), so an edit, deletion or insertion is detected by ``audit verify``.
"""
