"""Writing and reading audit records (the ``audit_event`` table)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from sqlalchemy import Row, insert, select

from fhir_bridge.audit.tables import AUDIT
from fhir_bridge.store.database import Engines, ensure_tables

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


def now_us() -> int:
    return int(time.time() * 1_000_000)


def redact_query(parameters: Sequence[tuple[str, str]], keyed_hash: Callable[[str], str] | None) -> str | None:
    """The query string for the trail, with values of personal parameters replaced by keyed hashes."""
    if not parameters:
        return None
    kept = []
    for name, value in parameters:
        code = name.split(".")[-1].split(":")[0]
        if code in PERSONAL_PARAMETERS and value:
            value = f"hmac:{keyed_hash(value)[:32]}" if keyed_hash else "redacted"
        kept.append((name, value))
    return urlencode(kept)


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

    def search(self, conditions: list, *, after: int | None, count: int) -> list[Row]:
        """Records matching every condition, in id order (oldest first), after the given id."""
        statement = select(AUDIT).where(*conditions)
        if after is not None:
            statement = statement.where(AUDIT.c.id > after)
        with self.engines.reader.connect() as connection:
            return list(connection.execute(statement.order_by(AUDIT.c.id).limit(count)).all())
