"""Lockout of the token endpoint after repeated failures, per address and per client at an address.

Each failed token request (a bad assertion, an unknown client, a replayed jti) counts against its
address and against the pair (claimed client id, address) in a fixed window; past a limit, requests
from there get 429 with ``Retry-After`` until the window ends. A success clears the pair's count. The
counts are rows of the database, not memory, so that every worker of a PostgreSQL database (and
every process of a SQLite one) counts the same failures: N workers do not multiply the limits.

The pair, not the client id alone, is locked so that someone who knows a client's id cannot lock the
real client out from another address; the address limit bounds guessing across client ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhir_bridge.security.tables import AUTH_FAILURE
from fhir_bridge.store.database import Engines, ensure_tables


@dataclass(frozen=True)
class Limits:
    window_s: int = 300
    per_client: int = 5  # failures of one client id from one address per window
    per_address: int = 20  # failures from one address per window, whatever the client ids


class Lockout:
    def __init__(self, engines: Engines, limits: Limits | None = None) -> None:
        ensure_tables(engines, [AUTH_FAILURE])
        self.engines = engines
        self.limits = limits or Limits()

    def retry_after(self, address: str, client_id: str | None) -> int | None:
        """Seconds until requests from ``address`` for ``client_id`` are heard again; None if they are now."""
        now = int(time.time())
        keys = _keys(address, client_id, self.limits)
        with self.engines.reader.connect() as connection:
            rows = connection.execute(
                select(AUTH_FAILURE.c.key, AUTH_FAILURE.c.window_start, AUTH_FAILURE.c.failures).where(
                    AUTH_FAILURE.c.key.in_(list(keys)),
                    AUTH_FAILURE.c.window_start > now - self.limits.window_s,
                )
            ).all()
        waits = [row.window_start + self.limits.window_s - now for row in rows if row.failures >= keys[row.key]]
        return max(max(waits), 1) if waits else None

    def failed(self, address: str, client_id: str | None) -> None:
        now = int(time.time())
        window = self.limits.window_s
        for key in _keys(address, client_id, self.limits):
            for _ in range(3):  # two workers may insert the same key at once: the loser updates
                try:
                    with self.engines.writer.begin() as connection:
                        stale = AUTH_FAILURE.c.window_start <= now - window
                        changed = connection.execute(
                            update(AUTH_FAILURE)
                            .where(AUTH_FAILURE.c.key == key, stale)
                            .values(window_start=now, failures=1)
                        ).rowcount
                        if not changed:
                            changed = connection.execute(
                                update(AUTH_FAILURE)
                                .where(AUTH_FAILURE.c.key == key)
                                .values(failures=AUTH_FAILURE.c.failures + 1)
                            ).rowcount
                        if not changed:
                            connection.execute(insert(AUTH_FAILURE).values(key=key, window_start=now, failures=1))
                    break
                except IntegrityError:
                    continue
        with self.engines.writer.begin() as connection:  # forget windows long over
            connection.execute(delete(AUTH_FAILURE).where(AUTH_FAILURE.c.window_start < now - 2 * window))

    def succeeded(self, address: str, client_id: str) -> None:
        with self.engines.writer.begin() as connection:
            connection.execute(delete(AUTH_FAILURE).where(AUTH_FAILURE.c.key == _pair(address, client_id)))


def _pair(address: str, client_id: str) -> str:
    return f"client:{client_id[:128]}@{address[:200]}"


def _keys(address: str, client_id: str | None, limits: Limits | None = None) -> dict[str, int]:
    """The counters a request from ``address`` for ``client_id`` is held to, with their limits."""
    limits = limits or Limits()
    keys = {f"address:{address[:200]}": limits.per_address}
    if client_id:
        keys[_pair(address, client_id)] = limits.per_client
    return keys
