"""What the network listeners share: allow-lists of peers, and recording what peers did in the audit trail.

An allow-list says who may send (a name the peer gives itself) and from where.

One entry is ``NAME`` (from any address), ``NAME@host`` (only from that address or host name) or
``*@host`` (any name from there). The DICOM listener names callers by calling AE title, the MLLP
listener by sending facility (MSH-4). Host names are resolved once, when the list is read.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from fhir_bridge.audit.log import AuditEntry
from fhir_bridge.settings import ConfigurationError

log = logging.getLogger("fhir_bridge.listeners")


@dataclass(frozen=True)
class Peer:
    """One entry of an allow-list: a name ("*": any) and, if pinned, the addresses it may connect from."""

    name: str
    addresses: frozenset[str] | None = None

    def admits(self, name: str, address: str) -> bool:
        return self.name in ("*", name) and self.reaches(address)

    def reaches(self, address: str) -> bool:
        """Whether a connection from ``address`` may send anything (under some name)."""
        return self.addresses is None or address in self.addresses


def parse_peers(entries: list[str], setting: str, what: str, max_length: int) -> list[Peer]:
    """The allow-list of ``setting`` (named in errors); ``what`` names the peers' names (e.g. AE title)."""
    peers = []
    for entry in entries:
        name, _, host = entry.strip().partition("@")
        if not name or len(name) > max_length:
            raise ConfigurationError(f"{setting}: {entry!r} has no valid {what}")
        addresses = None
        if host:
            try:
                addresses = frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))
            except OSError:
                raise ConfigurationError(f"{setting}: the host of {entry!r} cannot be resolved") from None
        peers.append(Peer(name, addresses))
    return peers


def record(audit: Callable[[AuditEntry], None] | None, entry: AuditEntry, what: str) -> None:
    """Write ``entry`` to the audit trail; when the trail's database is down, say so loudly (naming ``what``
    could not be recorded) but keep the data flowing."""
    if audit is None:
        return
    try:
        audit(entry)
    except Exception as error:
        log.error("the audit record of %s could not be written (%s)", what, type(error).__name__)
