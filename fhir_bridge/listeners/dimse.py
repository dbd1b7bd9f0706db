"""The DICOM DIMSE listener: a Storage SCP (C-STORE, C-ECHO) feeding the DICOM ingest, built on pynetdicom.

Per instance, on the association's thread: the header is read once from the bytes received (our
reader; pynetdicom never decodes the dataset, pixels are never decoded), the ingest's checks run
(UIDs, privacy rules), the instance is appended to the association's spool segment and made durable
(``fdatasync``), and only then answered, with the status PS3.4 Annex B gives: 0000 stored, B000
stored with coercion (e.g. a non-conformant UID replaced), A700 out of resources, A900 data set
does not match SOP class, C000 cannot understand, each failure with an Error Comment.

Writing to the store is batched: a committer thread writes each sealed segment (``batch_size``
instances, ``batch_ms`` old, or the association's end) through ``DicomIngest.ingest`` in one
transaction with one Provenance naming the calling AE title and address. Studies merge as for
STOW-RS, under the store's commit lock. See ``listeners.spool`` for why nothing acknowledged is lost
and nothing is written twice, and docs/dicom-dimse.md for the design.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from fhir_bridge.audit.log import AuditEntry, dimse_entry
from fhir_bridge.dicom.reader import (
    DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    DicomInstance,
    DicomReadError,
    read_stream,
)
from fhir_bridge.ingest.dicom import DicomIngest, IngestResult
from fhir_bridge.ingest.provenance import Source
from fhir_bridge.listeners.peers import Peer, parse_peers, record
from fhir_bridge.listeners.spool import Segment, Spool, SpoolInUse, provenance_id, read_segment
from fhir_bridge.settings import ConfigurationError, Settings

log = logging.getLogger("fhir_bridge.dimse")

CHANNEL = "DICOM C-STORE"
SUCCESS = 0x0000
REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03
MAX_COMMENT = 64  # Error Comment (0000,0902) is an LO
RETRY_S = (1, 2, 5, 10, 30, 60)  # waits between attempts to write a batch while the store fails


Caller = Peer  # one entry of the allow-list: a calling AE title ("*": any), pinned to addresses or not


def parse_callers(entries: list[str]) -> list[Caller]:
    """``AE``, ``AE@host`` or ``*@host`` entries; host names are resolved once, here."""
    return parse_peers(entries, "FHIR_BRIDGE_DIMSE_ALLOWED_CALLERS", "AE title", 16)


@dataclass(frozen=True)
class DimseConfig:
    """The listener's settings (from ``Settings``)."""

    ae_title: str
    host: str
    port: int
    callers: list[Caller]
    spool_dir: Path
    batch_size: int = 500
    batch_ms: int = 2000
    max_spool_bytes: int = 8 * 1024**3
    max_associations: int = 10
    timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DimseConfig:
        if settings.dimse_port is None:
            raise ConfigurationError("the DICOM listener needs a port: set FHIR_BRIDGE_DIMSE_PORT")
        return cls(
            ae_title=settings.dimse_ae_title,
            host=settings.dimse_host or settings.host,
            port=settings.dimse_port,
            callers=parse_callers(settings.dimse_allowed_callers),
            spool_dir=settings.dimse_spool_dir,
            batch_size=settings.dimse_batch_size,
            batch_ms=settings.dimse_batch_ms,
            max_spool_bytes=settings.dimse_max_spool_bytes,
            max_associations=settings.dimse_max_associations,
            timeout_s=settings.dimse_timeout_s,
        )


@dataclass
class _Batch:
    """A sealed segment waiting to be written: its file, sender and the instances read when received."""

    path: Path
    source: Source
    items: list[DicomInstance | DicomReadError] | None  # None: a leftover, read again from its file
    size: int = 0  # bytes of its instances
    attempts: int = 0
    not_before: float = 0.0


@dataclass
class _Association:
    """What the listener knows of one association while it lasts."""

    id: str
    calling_ae: str
    address: str
    source: Source
    lock: threading.Lock = field(default_factory=threading.Lock)
    segment: Segment | None = None
    items: list[DicomInstance | DicomReadError] = field(default_factory=list)
    opened: float = 0.0  # when the current segment got its first instance (monotonic)
    statuses: Counter[int] = field(default_factory=Counter)
    echoes: int = 0


class DimseListener:
    """A Storage SCP bound to one DicomIngest; ``start()``, ``drain()`` (tests), ``stop()``.

    ``audit`` receives one record per association (and per refused association request).
    """

    def __init__(
        self, config: DimseConfig, ingest: DicomIngest, audit: Callable[[AuditEntry], None] | None = None
    ) -> None:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines name every instance sent
        self.config = config
        self.ingest = ingest
        self.audit = audit
        try:
            self.spool = Spool(config.spool_dir)
        except SpoolInUse as error:
            raise ConfigurationError(
                f"{error}: give each DICOM listener a FHIR_BRIDGE_DIMSE_SPOOL_DIR of its own"
            ) from None
        self._associations: dict[int, _Association] = {}
        self._lock = threading.Lock()
        self._queue: list[_Batch] = []
        self._wake = threading.Condition(self._lock)
        self._busy = False
        self._stopping = False
        self._waiting_bytes = 0
        self._committer: threading.Thread | None = None
        self._server: Any = None
        self.ae = self._application_entity()

    @classmethod
    def from_settings(
        cls, settings: Settings, ingest: DicomIngest, audit: Callable[[AuditEntry], None] | None
    ) -> DimseListener:
        return cls(DimseConfig.from_settings(settings), ingest, audit)

    # set-up ------------------------------------------------------------------------------------
    def _application_entity(self) -> AE:
        ae = AE(self.config.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(cast(str, context.abstract_syntax), AllTransferSyntaxes)
        ae.add_supported_context(Verification, AllTransferSyntaxes)
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs from senders that honour it
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.config.timeout_s
        return ae

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one picked for port 0)."""
        return self._server.server_address[1] if self._server is not None else self.config.port

    def start(self) -> None:
        """Queue the spool's leftovers for writing, start the committer, then accept associations."""
        for path in self.spool.leftovers():
            size = path.stat().st_size
            self._queue.append(_Batch(path, Source(CHANNEL, "?"), None, size))
            self._waiting_bytes += size
        self._committer = threading.Thread(target=self._commit_loop, name="dimse-committer", daemon=True)
        self._committer.start()
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        self._server = self.ae.start_server((self.config.host, self.config.port), block=False, evt_handlers=handlers)
        log.info(
            "DICOM listener %s on %s:%s (spool %s)",
            self.config.ae_title,
            self.config.host,
            self.port,
            self.spool.folder,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, end open associations, write what is spooled (within ``timeout``), stop."""
        if self._server is not None:
            self._server.shutdown()
            for association in list(self._server.active_associations):
                association.abort()
        self.drain(timeout)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._committer is not None:
            self._committer.join(timeout)
        self.ae.shutdown()
        self.spool.close()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every instance received so far is written (or set aside); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wake:
            for association in self._associations.values():
                self._seal(association)
            self._wake.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.1))
        return True

    # association events ----------------------------------------------------------------------------
    @staticmethod
    def _on_open(event: evt.Event) -> None:
        """No Nagle stall: ACK each read at once and send without delay.

        Senders write a command and its data set back to back; with Nagle's algorithm on their side
        (dcmtk's default) the data set waits for the ACK of the command, which a delayed-ACK peer
        holds for ~40 ms: that was 90% of the time per instance.
        """
        wrapper = event.assoc.dul.socket
        raw = wrapper.socket if wrapper is not None else None
        if wrapper is None or raw is None:
            return
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        quick_ack = getattr(socket, "TCP_QUICKACK", None)  # Linux; re-armed before each read
        if quick_ack is None:
            return
        receive = wrapper.recv

        def recv(count: int) -> bytearray:
            raw.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)
            return receive(count)

        wrapper.recv = recv  # type: ignore[method-assign,assignment]  # this association's socket only

    def _on_requested(self, event: evt.Event) -> None:
        """Reject callers not on the allow-list (A-ASSOCIATE-RJ: calling AE title not recognised)."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED: the A-ASSOCIATE-RQ has arrived
        calling = request.calling_ae_title.strip()
        address = assoc.requestor.address
        if any(caller.admits(calling, address) for caller in self.config.callers):
            return
        log.warning(
            "DICOM association from %r at %s rejected: calling AE title not on the allow-list", calling, address
        )
        self._record(
            dimse_entry(
                "A-ASSOCIATE",
                self.config.ae_title,
                calling,
                address,
                "refused",
                f"association from AE title {calling} at {address} rejected: calling AE title not recognised",
            )
        )
        assoc.acse.send_reject(REJECTED_PERMANENT, SERVICE_USER, CALLING_AE_NOT_RECOGNISED)
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def _on_accepted(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.ae_title.strip()
        address = assoc.requestor.address
        source = Source(CHANNEL, f"calling AE title {calling} at {address}, called AE title {self.config.ae_title}")
        with self._lock:
            self._associations[id(assoc)] = _Association(uuid.uuid4().hex, calling, address, source)

    def _on_echo(self, event: evt.Event) -> int:
        with self._lock:
            association = self._associations.get(id(event.assoc))
        if association is not None:
            association.echoes += 1
        return SUCCESS

    def _on_close(self, event: evt.Event) -> None:
        """The association ended (released, aborted or dropped): seal its segment and record it."""
        with self._lock:
            association = self._associations.pop(id(event.assoc), None)
            if association is None:
                return
            self._seal(association)
            self._wake.notify_all()
        self.spool.forget(association.id)
        ending = "released" if event.assoc.is_released else "aborted"
        statuses = association.statuses
        stored = sum(count for status, count in statuses.items() if _stored(status))
        failed = sum(statuses.values()) - stored
        service = "C-STORE" if statuses or not association.echoes else "C-ECHO"
        warned = sum(count for status, count in statuses.items() if status and _stored(status))
        detail = f"association from AE title {association.calling_ae} at {association.address} {ending}: " + (
            f"{stored} instances stored, {warned} with a warning, {failed} failed"
            if service == "C-STORE"
            else f"{association.echoes} C-ECHO"
        )
        if failed:
            detail += " (" + ", ".join(f"{status:04X}: {count}" for status, count in sorted(statuses.items())) + ")"
        outcome = "success" if not failed else "partial" if stored else "failed"
        self._record(
            dimse_entry(service, self.config.ae_title, association.calling_ae, association.address, outcome, detail)
        )

    def _record(self, entry: AuditEntry) -> None:
        record(self.audit, entry, "a DICOM association")

    # C-STORE ------------------------------------------------------------------------------------
    def _on_store(self, event: evt.Event) -> Dataset:
        with self._lock:
            association = self._associations.get(id(event.assoc))
        status, comment = self._store(event, association)
        if association is not None:
            association.statuses[status] += 1
        answer = Dataset()
        answer.Status = status
        if comment:
            answer.ErrorComment = comment[:MAX_COMMENT]
        return answer

    def _store(self, event: evt.Event, association: _Association | None) -> tuple[int, str | None]:
        """The status of one C-STORE, after the instance is durable when it is stored."""
        if association is None:
            return PROCESSING_FAILURE, "the association is not known to the listener"
        if self._waiting_bytes > self.config.max_spool_bytes:
            return OUT_OF_RESOURCES, "out of resources: the store is behind; send again later"
        data = event.encoded_dataset()
        try:
            item = read_stream(io.BytesIO(data))
        except DicomReadError as error:
            return error.code, error.reason
        request = cast(C_STORE, event.request)
        if item.sop_class_uid != request.AffectedSOPClassUID or item.sop_instance_uid != request.AffectedSOPInstanceUID:
            return DOES_NOT_MATCH_SOP_CLASS, "the data set's SOP Class or Instance UID differs from the command's"
        try:
            outcome = self.ingest.check(item)
        except Exception as error:  # a defect of ours, not of the instance: say so without quoting values
            log.error("DICOM C-STORE check failed (%s)", type(error).__name__)
            return PROCESSING_FAILURE, f"processing failure ({type(error).__name__})"
        if not outcome.stored:
            return outcome.failure or PROCESSING_FAILURE, outcome.reason
        try:
            self._spool(association, item, data)
        except OSError as error:
            log.error("the DICOM spool %s cannot be written: %s", self.spool.folder, error.strerror)
            return OUT_OF_RESOURCES, "out of resources: the spool cannot be written"
        return (outcome.warning, outcome.reason) if outcome.warning is not None else (SUCCESS, None)

    def _spool(self, association: _Association, item: DicomInstance, data: bytes) -> None:
        with association.lock:
            if association.segment is None:
                association.segment = self.spool.new_segment(association.id, association.source)
                association.opened = time.monotonic()
            association.segment.append(data)
            association.items.append(item)
            full = association.segment.count >= self.config.batch_size
        with self._wake:
            self._waiting_bytes += len(data)
            if full:
                self._seal(association)
                self._wake.notify_all()

    def _seal(self, association: _Association) -> None:
        """Close the association's segment and queue it as a batch (caller holds ``self._lock``)."""
        with association.lock:
            segment, items = association.segment, association.items
            if segment is None:
                return
            association.segment, association.items = None, []
        segment.close()
        self._queue.append(_Batch(segment.path, association.source, items, segment.bytes))

    # the committer -------------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        while True:
            with self._wake:
                batch = self._next_batch()
                if batch is None:
                    return
                self._busy = True
            try:
                self._commit(batch)
            except Exception as error:  # keep the batch; try again later
                log.error("writing a DICOM batch failed (%s); it stays in the spool", type(error).__name__)
                self._retry(batch)
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _next_batch(self) -> _Batch | None:
        """The next batch due (caller holds ``self._lock``); seals segments older than ``batch_ms``."""
        while True:
            now = time.monotonic()
            for association in self._associations.values():
                if association.segment is not None and now - association.opened >= self.config.batch_ms / 1000:
                    self._seal(association)
            due = [batch for batch in self._queue if batch.not_before <= now]
            if due:
                self._queue.remove(due[0])
                return due[0]
            if self._stopping:
                return None
            self._wake.wait(min(self.config.batch_ms / 1000, 0.5))

    def _commit(self, batch: _Batch) -> None:
        key = provenance_id(batch.path)
        items = batch.items
        if items is None:  # a leftover from before a restart
            if self.ingest.committed(key):
                log.info("spool segment %s was written before the restart: removed", batch.path.name)
                self._forget(batch)
                return
            try:
                batch.source, records = read_segment(batch.path)
            except ValueError:  # cut off before its first record: nothing in it was acknowledged
                log.warning("spool segment %s holds no instance: removed", batch.path.name)
                self._forget(batch)
                return
            items = [_read(data) for data in records]
            log.info("spool segment %s: %d instances left from before the restart", batch.path.name, len(items))
        result = self.ingest.ingest(items, batch.source, provenance_id=key)
        if result.write_failed:
            batch.items = items
            self._retry(batch)
            return
        self._set_aside(batch, result)
        self._forget(batch)

    def _forget(self, batch: _Batch) -> None:
        """The batch is in the store (or was never acknowledged): remove its segment."""
        self.spool.remove(batch.path)
        with self._wake:
            self._waiting_bytes -= batch.size

    def _set_aside(self, batch: _Batch, result: IngestResult) -> None:
        """Instances acknowledged but refused by the store (not expected): kept in rejected/, logged."""
        failed = [outcome for outcome in result.outcomes if not outcome.stored]
        if not failed:
            return
        _, records = read_segment(batch.path)
        for outcome in failed:
            target = self.spool.reject(batch.path, outcome.index, records[outcome.index])
            log.error(
                "an acknowledged DICOM instance was refused by the store (%s): kept as %s",
                outcome.reason,
                target,
            )

    def _retry(self, batch: _Batch) -> None:
        wait = RETRY_S[min(batch.attempts, len(RETRY_S) - 1)]
        batch.attempts += 1
        batch.not_before = time.monotonic() + wait
        log.warning("the store could not take a DICOM batch (attempt %d); next try in %d s", batch.attempts, wait)
        with self._wake:
            self._queue.append(batch)


def _stored(status: int) -> bool:
    """0000 success, Bxxx warning (PS3.4 Annex B): the instance was stored."""
    return status == SUCCESS or status & 0xF000 == 0xB000


def _read(data: bytes) -> DicomInstance | DicomReadError:
    try:
        return read_stream(io.BytesIO(data))
    except DicomReadError as error:
        return error
