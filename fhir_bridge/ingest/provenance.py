"""Who sent what, how, and when: the Provenance every ingest transaction writes with what it stored."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_bridge.store.versions import StoredVersion
from fhir_bridge.version import package_version

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


@dataclass(frozen=True)
class Source:
    """Who sent the data and how, for the Provenance; never a file path (paths can carry names)."""

    channel: str
    sender: str


def provenance(
    source: Source,
    targets: list[StoredVersion],
    recorded: str,
    *,
    activity: dict[str, Any],
    narrative: str,
    entities: list[dict[str, Any]],
    security_labels: list[dict[str, Any]] | None = None,
    provenance_id: str | None = None,
) -> dict[str, Any]:
    """A Provenance naming each version written (once), the sender as performer and this service as assembler."""
    references = {f"{t.reference}/_history/{t.version}": None for t in targets}
    record: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id or str(uuid.uuid4()),
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>'},
        "target": [{"reference": reference} for reference in references],
        "recorded": recorded,
        "activity": activity,
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "performer", "display": "Performer"}]},
                "who": {"display": f"{source.channel} sender: {source.sender}"},
            },
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]},
                "who": {"display": f"fhir-bridge {package_version()} on {socket.gethostname()}"},
            },
        ],
        "entity": entities,
    }
    if security_labels:
        record["meta"] = {"security": security_labels}
    return record
