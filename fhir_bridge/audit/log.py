"""Writing and reading audit records (the ``audit_event`` table)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from sqlalchemy import Row, insert, select

from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.store.database import Engines, ensure_tables

AUDIT_TABLES = (AUDIT,)  # the trail's tables, for what moves a whole database (``store.copy``)

# Search parameters whose values can name a person directly: kept in the trail only as keyed hashes,
# so that "who searched for this identifier" can be answered without the trail holding the identifier.
PERSONAL_PARAMETERS = frozenset(
    {
        "identifier",
        "name",
        "family",
        "given",
        "phonetic",
        "birthdate",
        "telecom",
        "phone",
        "email",
        "address",
        "address-city",
        "address-postalcode",
        "address-state",
        "address-country",
        "_content",
        "_text",
    }
)


@dataclass(frozen=True)
class AuditEntry:
    """What one request did: the columns of ``audit_event`` without the id."""

    recorded: int  # microseconds since the epoch
    client_id: str | None
    interaction: str
    action: str
    method: str
    path: str
    query: str | None
    entity: str | None
    entity_type: str | None
    status: int
    detail: str | None
    address: str | None


DIMSE = "DIMSE"  # the ``method`` of records of DICOM network (DIMSE) associations; ``path`` names the service
DIMSE_CLIENT_PREFIX = "dicom-ae:"  # ``client_id`` of a DIMSE record: the calling AE title, so prefixed
# DIMSE records have no HTTP status; ``status`` holds the class of their outcome on the same scale, so that
# AuditEvent.outcome and the ``outcome`` search treat both alike.
DIMSE_OUTCOME_STATUS = {"success": 200, "refused": 403, "partial": 422, "failed": 503}
MLLP = "MLLP"  # the ``method`` of records of HL7 v2 messages received over MLLP; ``path`` names the message type
MLLP_CLIENT_PREFIX = "hl7-facility:"  # ``client_id`` of an MLLP record: the sending facility (MSH-4), so prefixed
# The acknowledgment code of an MLLP record on the same scale as the HTTP statuses: AA accepted, AE the
# message's content is in error, AR rejected (sender or message type not accepted; 503: the store is down).
MLLP_ACK_STATUS = {"AA": 200, "AE": 422, "AR": 403}


def dimse_entry(
    service: str,
    called_ae: str,
    calling_ae: str,
    address: str | None,
    outcome: str,
    detail: str,
) -> AuditEntry:
    """The record of one DICOM association (C-STORE, C-ECHO) or of one refused association request.

    ``outcome``: success, refused (association rejected), partial (some instances failed), failed.
    """
    storing = service == "C-STORE"
    return AuditEntry(
        recorded=now_us(),
        client_id=(DIMSE_CLIENT_PREFIX + calling_ae)[:128],
        interaction="create" if storing else "operation",
        action="C" if storing else "E",
        method=DIMSE,
        path=f"dicom:{called_ae}/{service}",
        query=None,
        entity=None,
        entity_type="ImagingStudy" if storing else None,
        status=DIMSE_OUTCOME_STATUS[outcome],
        detail=detail[:1000],
        address=address,
    )


def mllp_entry(
    message_type: str, facility: str, address: str | None, status: int, detail: str, entity: str | None = None
) -> AuditEntry:
    """The record of one HL7 v2 message received over MLLP (or of a refused connection: ``message_type`` CONNECT).

    ``status`` is the ACK's class (``MLLP_ACK_STATUS``, or 503 when the store could not take the message);
    ``entity`` the Provenance of what the message stored, if anything.
    """
    received = message_type != "CONNECT"
    return AuditEntry(
        recorded=now_us(),
        client_id=(MLLP_CLIENT_PREFIX + facility)[:128] if facility else None,
        interaction="create" if received else "operation",
        action="C" if received else "E",
        method=MLLP,
        path=f"hl7v2:{message_type}",
        query=None,
        entity=entity,
        entity_type="Provenance" if entity else None,
        status=status,
        detail=detail[:1000],
        address=address,
    )


def now_us() -> int:
    return int(time.time() * 1_000_000)


def is_personal(name: str) -> bool:
    """Whether a search parameter's value can name a person: any part of its name is personal.

    Chains (``subject:Patient.identifier``), reverse chains (``_has:Observation:patient:identifier``)
    and modifiers (``patient:identifier``, ``identifier:of-type``) all reach a personal parameter,
    whichever part of the name holds it; the other parts (types, modifiers) are never personal names.
    """
    return any(part in PERSONAL_PARAMETERS for part in re.split(r"[.:]", name))


def redact_query(parameters: Sequence[tuple[str, str]], keyed_hash: Callable[[str], str] | None) -> str | None:
    """The query string for the trail, with values of personal parameters replaced by keyed hashes."""
    if not parameters:
        return None
    kept = []
    for name, value in parameters:
        if value and is_personal(name):
            value = f"hmac:{keyed_hash(value)[:32]}" if keyed_hash else "redacted"
        kept.append((name, value))
    return urlencode(kept)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def redact_detail(detail: str | None, keyed_hash: Callable[[str], str] | None) -> str | None:
    """A refusal's reason for the trail, with every quoted value (where messages quote what the client
    sent: search values, references, ids) replaced by its keyed hash, as personal query values are."""
    if not detail:
        return None

    def hashed(match: re.Match[str]) -> str:
        value = match.group(0)[1:-1]
        return f"'hmac:{keyed_hash(value)[:16]}'" if keyed_hash else "'redacted'"

    return _QUOTED.sub(hashed, detail)[:1000]


class AuditLog:
    """Appends audit records, each in its own short transaction, and reads them back."""

    def __init__(self, engines: Engines) -> None:
        """A trail on ``engines`` (``store.database.engines_beside`` the store's), its table created if new."""
        ensure_tables(engines, [AUDIT])
        self.engines = engines
        self._insert = insert(AUDIT)

    def record(self, entry: AuditEntry) -> None:
        row = {k: v.replace("\x00", "\\0") if isinstance(v, str) else v for k, v in asdict(entry).items()}
        with self.engines.writer.begin() as connection:  # NUL above: PostgreSQL text cannot hold it
            connection.execute(self._insert, row)

    def read(self, record_id: int) -> Row | None:
        with self.engines.reader.connect() as connection:
            return connection.execute(select(AUDIT).where(AUDIT.c.id == record_id)).first()

    def search(self, conditions: list, *, after: int | None, count: int, newest_first: bool = False) -> list[Row]:
        """Records matching every condition, in id order (oldest first), after the given id.

        ``newest_first``: the latest records, newest first, before the given id (a screen of recent activity).
        """
        statement = select(AUDIT).where(*conditions)
        if after is not None:
            statement = statement.where(AUDIT.c.id < after if newest_first else AUDIT.c.id > after)
        order = AUDIT.c.id.desc() if newest_first else AUDIT.c.id
        with self.engines.reader.connect() as connection:
            return list(connection.execute(statement.order_by(order).limit(count)).all())
