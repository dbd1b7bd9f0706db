"""Tamper evidence: every audit record is chained to the one before it by a keyed hash.

A record's ``hash`` is HMAC-SHA256, under the chain key, of the previous record's hash and of the
record's own columns (its id included). Without the key nobody can compute a hash, so a record that
is edited, deleted or inserted breaks the chain where it stands, and ``verify`` names it. The key is
never in the database: it is derived from the site secret (or read from a key file of its own), and
the database keeps only a short key id, so that a worker with another key refuses to write rather
than fork the chain.

Ids are chain positions: the writer gives each record the next id under the lock of the chain's
head (``audit_chain``), so the chain is one line whatever the processes writing it. Records written
before the chain existed (ids up to ``start_id``) carry no hash and are reported as unchained.

A purge deletes the oldest records and appends a checkpoint record (``PURGE_PATH``) that states the
last id deleted and its hash: the chain then verifies from the first record left. The checkpoint is
itself chained, so it cannot be forged either.

What the chain cannot show on its own: the newest records deleted *and* the head rewound to the
record before them (the head is in the same database). ``verify`` prints the head; keep it
elsewhere (a log, a ticket) and pass it back with ``--expect`` to detect that too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

# The columns a record's hash covers, in this order (all but ``hash``).
HASHED_COLUMNS = (
    "id",
    "recorded",
    "client_id",
    "interaction",
    "action",
    "method",
    "path",
    "query",
    "entity",
    "entity_type",
    "status",
    "detail",
    "address",
)
PURGE_PATH = "audit purge"  # the ``path`` of a purge's record; with a checkpoint its ``query`` says what went
_THROUGH, _CHAIN_HASH = "purged-through", "chain-hash"


class ChainKeyMismatch(RuntimeError):
    """The chain was written under another key than this process's."""


class ChainKey:
    """The key of the chain. ``keyed`` False: no secret was configured, the hash is a plain checksum."""

    def __init__(self, secret: bytes, *, keyed: bool = True) -> None:
        self._key = hmac.new(secret, b"fhir-bridge audit chain", hashlib.sha256).digest()
        self.keyed = keyed
        self.id = hmac.new(self._key, b"key id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def unkeyed(cls) -> ChainKey:
        return cls(b"", keyed=False)

    def genesis(self, start_id: int) -> str:
        """What the first chained record (``start_id + 1``) is chained to."""
        return hmac.new(self._key, f"genesis {start_id}".encode(), hashlib.sha256).hexdigest()

    def link(self, previous: str, record: Mapping[str, Any]) -> str:
        """The hash of ``record`` (its ``HASHED_COLUMNS``) chained after a record whose hash is ``previous``."""
        return self.link_values(previous, [record[name] for name in HASHED_COLUMNS])

    def link_values(self, previous: str, values: Sequence[Any]) -> str:
        """``link`` of a record given as its values in ``HASHED_COLUMNS`` order (as the writer holds it)."""
        serialised = orjson.dumps(values)
        return hmac.new(self._key, previous.encode("ascii") + b"\n" + serialised, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Head:
    """The chain's head row."""

    start_id: int
    last_id: int
    last_hash: str
    key_id: str


@dataclass(frozen=True)
class Checkpoint:
    """A purge: records up to ``through`` were deleted; ``chain_hash`` is what ``through + 1`` chains to."""

    through: int
    chain_hash: str

    def query(self) -> str:
        return urlencode([(_THROUGH, str(self.through)), (_CHAIN_HASH, self.chain_hash)])

    @classmethod
    def of(cls, query: str | None) -> Checkpoint | None:
        values = dict(parse_qsl(query or ""))
        through, chain_hash = values.get(_THROUGH, ""), values.get(_CHAIN_HASH, "")
        return cls(int(through), chain_hash) if through.isdigit() and chain_hash else None


@dataclass
class Problem:
    record_id: int
    what: str

    def __str__(self) -> str:
        return f"record {self.record_id}: {self.what}"


@dataclass
class Report:
    """What ``verify`` found. ``problems`` empty: every record from the first kept one to the head is intact."""

    head: Head | None
    chained: int = 0
    unchained: int = 0
    first_chained: int | None = None
    purged_through: int | None = None
    keyed: bool = True
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(
    key: ChainKey,
    head: Head | None,
    rows: Iterable[Mapping[str, Any]],
    checkpoint: Checkpoint | None,
    expect: tuple[int, str] | None = None,
) -> Report:
    """Walk the records (oldest first) and report every break of the chain, the first one first.

    ``expect``: a head (id, hash) printed by an earlier verification; the record must still be there
    with that hash (this catches the newest records deleted with the head rewound).
    """
    report = Report(head, keyed=key.keyed, purged_through=checkpoint.through if checkpoint else None)
    problems = report.problems
    if head is not None and head.key_id != key.id:
        raise ChainKeyMismatch(
            f"the audit chain was written under key id {head.key_id}, this configuration's is {key.id}: "
            "verify with the key (site secret or audit key file) the trail was written with"
        )
    previous_id: int | None = None
    previous_hash: str | None = None
    start_id = head.start_id if head else None
    if head is not None and checkpoint is not None and checkpoint.through > head.start_id:
        first_kept = checkpoint.through + 1  # the oldest record a purge left
    else:
        first_kept = head.start_id + 1 if head else 1
    for row in rows:
        record_id = int(row["id"])
        stored = row["hash"]
        if head is None or start_id is None:
            if stored is None:
                report.unchained += 1
            else:
                problems.append(Problem(record_id, "has a hash but the trail has no chain head: inserted"))
            continue
        if stored is None:
            if record_id <= start_id:
                report.unchained += 1
            else:
                problems.append(Problem(record_id, "has no hash, yet is newer than the chain's start: inserted"))
            continue
        if record_id <= start_id:
            problems.append(Problem(record_id, "has a hash, yet is older than the chain's start: inserted"))
            continue
        if previous_id is None:
            report.first_chained = record_id
            if record_id == start_id + 1:
                previous_hash = key.genesis(start_id)
            elif checkpoint is not None and record_id == checkpoint.through + 1:
                previous_hash = checkpoint.chain_hash
            elif record_id < first_kept:
                problems.append(Problem(record_id, f"is older than the last purge (up to {first_kept - 1}): inserted"))
            else:
                problems.append(_missing(first_kept, record_id - 1))
                previous_hash = None
        elif record_id != previous_id + 1:
            problems.append(_missing(previous_id + 1, record_id - 1))
            previous_hash = None
        if expect is not None and record_id == expect[0] and stored != expect[1]:
            problems.append(Problem(record_id, "an earlier verification ended here with another hash: rewritten"))
        if record_id > head.last_id:
            problems.append(Problem(record_id, f"is beyond the chain's head (record {head.last_id}): inserted"))
        elif previous_hash is not None and key.link(previous_hash, row) != stored:
            problems.append(
                Problem(record_id, "was edited (it no longer matches its hash), or inserted in place of the original")
            )
        previous_id, previous_hash = record_id, stored
        report.chained += 1
    if head is not None and head.last_id > head.start_id:
        if previous_id is None or previous_id < head.last_id:
            after = previous_id + 1 if previous_id is not None else first_kept
            problems.append(_missing(after, head.last_id, " (the newest)"))
        elif previous_id == head.last_id and previous_hash != head.last_hash:
            problems.append(Problem(head.last_id, "does not match the chain's head: edited"))
    if expect is not None and (head is None or head.last_id < expect[0]):
        problems.append(
            Problem(expect[0], "an earlier verification ended here; the head no longer reaches it: deleted")
        )
    problems.sort(key=lambda problem: problem.record_id)
    return report


def _missing(first: int, last: int, which: str = "") -> Problem:
    if first == last:
        return Problem(first, f"is missing{which}: deleted")
    return Problem(first, f"is missing{which}: deleted, with the records after it up to {last}")
