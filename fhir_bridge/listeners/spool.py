"""A durable spool for received DICOM instances: acknowledged only once on disk, committed in batches.

A DIMSE sender waits for each C-STORE response, and status 0000 means "stored": it may then delete
its copy. So an instance is answered only after it is on disk (``fdatasync``), and written to the
store later, in batches (one transaction, one Provenance), which is what makes ingest fast.

Layout: one flat folder of *segments*, ``<association id>-<number>.seg``. A segment is the unit of
commit: the instances received into it are committed in one ingest call whose Provenance id is
derived from the segment's name (``provenance_id``), so after a crash the store itself says whether
a segment was committed (its Provenance exists) and nothing is written twice or lost:

- a segment starts with a record naming its sender (channel and sender text for the Provenance),
  then one record per instance: ``MAGIC``, the data's length and CRC-32, the Part-10 bytes;
- an append ends with ``fdatasync``, then the sender is answered; a crash mid-append leaves a torn
  last record, of an instance that was never acknowledged: recovery drops it;
- the file's directory entry is made durable (``fsync`` of the folder) when the segment is created;
- a segment is deleted only after its batch is committed (or its instances are set aside in
  ``rejected/``), so what is on disk is always what has not reached the store yet.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

from fhir_bridge.ingest.provenance import Source

log = logging.getLogger("fhir_bridge.listeners.spool")

MAGIC = b"FBSP"
HEADER = struct.Struct("<4sQI")  # magic, length, crc32
SUFFIX = ".seg"
NAMESPACE = uuid.UUID("4f1c6f0e-6a57-4bd8-9d4a-6d8b0b1c9e21")  # Provenance ids of spooled batches


def provenance_id(segment: Path) -> str:
    """The id of the Provenance of the batch committed from ``segment`` (the same after a restart)."""
    return str(uuid.uuid5(NAMESPACE, segment.stem))


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Segment:
    """One append-only segment file being written (by one association)."""

    def __init__(self, path: Path, source: Source) -> None:
        self.path = path
        self.count = 0
        self.bytes = 0
        self._file = path.open("xb")
        self._write(json.dumps({"channel": source.channel, "sender": source.sender}).encode("utf-8"))
        os.fdatasync(self._file.fileno())
        _fsync_directory(path.parent)

    def _write(self, data: bytes) -> None:
        self._file.write(HEADER.pack(MAGIC, len(data), zlib.crc32(data)))
        self._file.write(data)
        self._file.flush()

    def append(self, data: bytes) -> int:
        """Write one instance and make it durable; returns its index in the segment."""
        self._write(data)
        os.fdatasync(self._file.fileno())
        self.count += 1
        self.bytes += len(data)
        return self.count - 1

    def close(self) -> None:
        self._file.close()


def read_segment(path: Path) -> tuple[Source, list[bytes]]:
    """The source and the instances of a segment; a torn last record (never acknowledged) is dropped."""
    records: list[bytes] = []
    with path.open("rb") as stream:
        while True:
            header = stream.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            magic, length, crc = HEADER.unpack(header)
            data = stream.read(length)
            if magic != MAGIC or len(data) < length or zlib.crc32(data) != crc:
                log.warning("spool segment %s ends in a torn record (never acknowledged): dropped", path.name)
                break
            records.append(data)
    if not records:
        raise ValueError(f"spool segment {path.name} has no sender record")
    meta = json.loads(records[0])
    return Source(meta["channel"], meta["sender"]), records[1:]


class SpoolInUse(RuntimeError):
    """Another process holds the spool folder (two listeners must not share one)."""


class Spool:
    """The spool folder: new segments, leftover segments, and ``rejected/`` for instances set aside.

    One process owns a spool at a time (an exclusive ``flock`` on ``.lock``): a second listener on
    the same folder would take the first one's open segments for leftovers of a crash.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._owner = (folder / ".lock").open("a")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._owner.close()
            raise SpoolInUse(f"the spool {folder} is in use by another process") from None
        self.rejected = folder / "rejected"
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}

    def new_segment(self, association: str, source: Source) -> Segment:
        with self._lock:
            number = self._numbers.get(association, 0)
            self._numbers[association] = number + 1
        return Segment(self.folder / f"{association}-{number:06d}{SUFFIX}", source)

    def close(self) -> None:
        """Give the folder up (another process may then own it)."""
        self._owner.close()

    def forget(self, association: str) -> None:
        with self._lock:
            self._numbers.pop(association, None)

    def leftovers(self) -> Iterator[Path]:
        """Segments on disk from before this process started (their senders are gone)."""
        yield from sorted(self.folder.glob(f"*{SUFFIX}"))

    def remove(self, segment: Path) -> None:
        segment.unlink(missing_ok=True)
        _fsync_directory(self.folder)

    def reject(self, segment: Path, index: int, data: bytes) -> Path:
        """Keep an acknowledged instance the store refused, for the operator (it is never silently lost)."""
        self.rejected.mkdir(exist_ok=True)
        target = self.rejected / f"{segment.stem}-{index:06d}.dcm"
        with target.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        _fsync_directory(self.rejected)
        return target
