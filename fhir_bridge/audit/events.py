"""Audit records as FHIR R4 AuditEvent resources, and the AuditEvent search parameters they answer."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, or_

from fhir_bridge.audit.log import CLI, CLI_CLIENT_PREFIX, DIMSE, DIMSE_CLIENT_PREFIX, MLLP, MLLP_CLIENT_PREFIX
from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.errors import FhirError
from fhir_bridge.search.values import date_range

CLIENT_SYSTEM = "urn:fhir-bridge:client-id"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
SOURCE_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "4",
    "display": "Application Server",
}
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
# DICOM audit event types (PS3.15 A.5, DCM codes) of DIMSE records, by service; a refused association is an alert
DIMSE_EVENT_TYPES = {
    "C-STORE": {"system": DCM, "code": "110104", "display": "DICOM Instances Transferred"},
    "C-ECHO": {"system": DCM, "code": "110100", "display": "Application Activity"},
    "A-ASSOCIATE": {"system": DCM, "code": "110113", "display": "Security Alert"},
}
# HL7 v2 messages received over MLLP: data imported (DCM 110107); a refused connection is an alert
MLLP_EVENT_TYPES = {
    "CONNECT": {"system": DCM, "code": "110113", "display": "Security Alert"},
    "*": {"system": DCM, "code": "110107", "display": "Import"},
}
# DICOM audit event types of administrative commands (PS3.15 A.5), by command; others are Application Activity
SECURITY_CHANGE = {"system": DCM, "code": "110137", "display": "User Security Attributes Changed"}
CLI_EVENT_TYPES = {
    "clients add": SECURITY_CHANGE,
    "clients remove": SECURITY_CHANGE,
    "keys rotate": {"system": DCM, "code": "110135", "display": "Object Security Attributes Changed"},
    "ingest": {"system": DCM, "code": "110107", "display": "Import"},  # DICOM files and folders
    "ingest-clinical": {"system": DCM, "code": "110107", "display": "Import"},
}
APPLICATION_ACTIVITY = {"system": DCM, "code": "110100", "display": "Application Activity"}  # audit purge too
# The searches the trail answers (R4 AuditEvent search parameters) and the paging control.
SEARCH_PARAMETERS = ("date", "altid", "agent-name", "action", "outcome", "subtype", "entity", "entity-type", "address")
CONTROL_PARAMETERS = ("_count", "_after", "_format", "_pretty")


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (the client's), 8 serious failure (the server's)."""
    return "0" if status < 400 else "4" if status < 500 else "8"


def _instant(microseconds: int) -> str:
    return (
        datetime.fromtimestamp(microseconds / 1_000_000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def audit_event(row: Row) -> dict[str, Any]:
    """One audit record as an AuditEvent (R4)."""
    agent: dict[str, Any] = {"requestor": True}
    dimse = row.method in (DIMSE, MLLP)  # network listeners: no HTTP status, the detail says what happened
    cli = row.method == CLI
    if cli and row.client_id:
        operator = row.client_id.removeprefix(CLI_CLIENT_PREFIX)
        agent["who"] = {"display": f"operator {operator} (command line)"}
        agent["altId"] = row.client_id
        agent["name"] = operator
    elif dimse and row.client_id:
        mllp = row.method == MLLP
        title = row.client_id.removeprefix(MLLP_CLIENT_PREFIX if mllp else DIMSE_CLIENT_PREFIX)
        agent["who"] = {"display": f"HL7 v2 sending facility {title}" if mllp else f"DICOM AE title {title}"}
        agent["altId"] = row.client_id
        agent["name"] = title
    elif row.client_id:
        agent["who"] = {"identifier": {"system": CLIENT_SYSTEM, "value": row.client_id}, "display": row.client_id}
        agent["altId"] = row.client_id
        agent["name"] = row.client_id
    else:
        agent["who"] = {"display": "unauthenticated client"}
    if row.address:
        agent["network"] = {"address": row.address, "type": "2"}
    entities: list[dict[str, Any]] = []
    if row.entity:
        entities.append({"what": {"reference": row.entity}})
    described: dict[str, Any] = {"description": f"fhir-bridge {row.path}" if cli else f"{row.method} {row.path}"}
    if row.entity_type:
        described["type"] = {"system": RESOURCE_TYPES, "code": row.entity_type}
    if row.query:
        described["query"] = base64.b64encode(row.query.encode("utf-8")).decode("ascii")
    entities.append(described)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "meta": {"lastUpdated": _instant(row.recorded)},
        "type": _event_type(row),
        "subtype": [{"system": INTERACTION_SYSTEM, "code": row.interaction}],
        "action": row.action,
        "recorded": _instant(row.recorded),
        "outcome": outcome_code(row.status),
        "outcomeDesc": _outcome_description(row, no_http=dimse or cli),
        "agent": [agent],
        "source": {"observer": {"display": "fhir-bridge"}, "type": [SOURCE_TYPE]},
        "entity": entities,
    }
    return event


def _event_type(row: Row) -> dict[str, str]:
    if row.method == DIMSE:
        return DIMSE_EVENT_TYPES.get(row.path.rsplit("/", 1)[-1], EVENT_TYPE)
    if row.method == MLLP:
        return MLLP_EVENT_TYPES.get(row.path.removeprefix("hl7v2:"), MLLP_EVENT_TYPES["*"])
    if row.method == CLI:
        return CLI_EVENT_TYPES.get(row.path, APPLICATION_ACTIVITY)
    return EVENT_TYPE


def _outcome_description(row: Row, no_http: bool) -> str:
    if no_http:  # listeners and commands: no HTTP status, the detail says what happened
        return row.detail or row.path
    return f"HTTP {row.status}" + (f": {row.detail}" if row.detail else "")


def search_conditions(parameters: Sequence[tuple[str, str]]) -> tuple[list, int | None]:
    """SQL conditions for the AuditEvent search parameters, and the ``_after`` paging position.

    Unknown parameters are refused (400): a search of the audit trail that silently ignored a
    criterion would return more than asked for, and look like evidence.
    """
    conditions: list = []
    after = None
    for name, raw in parameters:
        code = name.split(":")[0]
        if code in CONTROL_PARAMETERS:
            if code == "_after":
                if not raw.isdigit():
                    raise FhirError(400, "_after must be a record id", code="invalid", expression="_after")
                after = int(raw)
            continue
        if code not in SEARCH_PARAMETERS or ":" in name:
            raise FhirError(
                400,
                f"AuditEvent search supports {', '.join(SEARCH_PARAMETERS)} (no modifiers), not {name!r}",
                code="not-supported",
                expression=name,
            )
        values = [v for v in raw.split(",") if v]
        if not values:
            continue
        conditions.append(_condition(code, values))
    return conditions, after


def _condition(code: str, values: list[str]):  # type: ignore[no-untyped-def]
    if code == "date":
        if len(values) != 1:
            raise FhirError(400, "date takes one value per parameter (repeat it for a range)", expression="date")
        return _date_condition(values[0])
    if code in ("altid", "agent-name"):
        column = AUDIT.c.client_id
        values = [v.split("|")[-1] for v in values]
    elif code == "action":
        column = AUDIT.c.action
    elif code == "subtype":
        column = AUDIT.c.interaction
        values = [v.split("|")[-1] for v in values]
    elif code == "entity":
        column = AUDIT.c.entity
        values = [v.split("/_history")[0] for v in values]
    elif code == "entity-type":
        column = AUDIT.c.entity_type
        values = [v.split("|")[-1] for v in values]
    elif code == "address":
        column = AUDIT.c.address
    else:  # outcome
        return or_(*[_outcome_condition(v.split("|")[-1]) for v in values])
    return column.in_(values)


def _outcome_condition(code: str):  # type: ignore[no-untyped-def]
    ranges = {"0": (0, 400), "4": (400, 500), "8": (500, 600), "12": (600, 600)}
    if code not in ranges:
        raise FhirError(400, f"outcome is 0, 4, 8 or 12, not {code!r}", code="invalid", expression="outcome")
    low, high = ranges[code]
    return (AUDIT.c.status >= low) & (AUDIT.c.status < high)


def _date_condition(raw: str):  # type: ignore[no-untyped-def]
    prefix, value = (raw[:2], raw[2:]) if raw[:2] in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb") else ("eq", raw)
    found = date_range(value)
    if found is None:
        raise FhirError(400, f"date {raw!r} is not a FHIR date or dateTime", code="invalid", expression="date")
    low, high = found
    column = AUDIT.c.recorded
    if prefix == "eq":
        return (column >= low) & (column <= high)
    if prefix == "ne":
        return (column < low) | (column > high)
    if prefix in ("gt", "sa"):
        return column > high
    if prefix in ("lt", "eb"):
        return column < low
    if prefix == "ge":
        return column >= low
    return column <= high  # le
