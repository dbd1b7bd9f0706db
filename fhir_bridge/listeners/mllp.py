"""The HL7 v2 MLLP listener: messages framed per the MLLP spec, each answered with an original-mode ACK.

Framing (HL7 v2 Appendix C, MLLP release 1/2): ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). Bytes
outside a frame are skipped (and logged); a frame is taken however the bytes arrive (a slow sender,
a frame split over many TCP segments); a frame larger than ``max_message_bytes`` is read to its end
without being kept and rejected (AR); a connection silent for ``timeout_s`` is closed.

Each message, on a worker thread (asyncio serves the sockets; the ingest blocks):

1. its MSH is read: no MSH, AR;
2. its sending facility (MSH-4) must be on the allow-list for the connection's address: else AR;
3. its type (MSH-9) chooses the clinical mapping (``FHIR_BRIDGE_MLLP_MAPPINGS``): none, AR (200);
4. a message received and stored before (same sender, control ID MSH-10 and content) is answered AA
   again without being written again: its Provenance has an id derived from those (keyed with the
   site secret) and is written in the transaction that stores the message, so "stored" and "known
   as stored" cannot disagree;
5. the message goes through ``ClinicalIngest.ingest`` (the same path as ``POST /ingest/clinical``),
   atomically: AA when stored, AE with one ERR per problem (the segment and field, the reason) when
   its content is in error (nothing stored), AR when the store could not take it (send again).

Every message (and every refused connection) is recorded in the audit trail.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fhir_bridge.audit.log import MLLP_ACK_STATUS, AuditEntry, mllp_entry
from fhir_bridge.ingest.clinical import ClinicalIngest, RecordResult
from fhir_bridge.ingest.provenance import Source
from fhir_bridge.listeners.hl7_ack import Ack, Header, NotHl7, Problem, is_location, read_header
from fhir_bridge.listeners.peers import Peer, parse_peers, record
from fhir_bridge.mapping.clinical import MappingError, MappingRegistry, ReaderOptions, UnknownMapping
from fhir_bridge.mapping.clinical.compiler import Mapping
from fhir_bridge.settings import ConfigurationError, Settings

log = logging.getLogger("fhir_bridge.mllp")

START, END = b"\x0b", b"\x1c\x0d"
CHANNEL = "HL7 v2 MLLP"
READ_SIZE = 1 << 16
HEADER_BYTES = 4096  # what is kept of an oversize frame: enough for its MSH
ATOMIC_BATCH = 1_000_000  # a message is one transaction, however many orders it holds


@dataclass(frozen=True)
class MllpConfig:
    """The listener's settings (from ``Settings``)."""

    host: str
    port: int
    senders: list[Peer]
    mappings: dict[str, str]
    max_message_bytes: int = 16 * 1024 * 1024
    max_connections: int = 20
    timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MllpConfig:
        assert settings.mllp_port is not None
        return cls(
            host=settings.mllp_host or settings.host,
            port=settings.mllp_port,
            senders=parse_peers(settings.mllp_allowed_senders, "FHIR_BRIDGE_MLLP_ALLOWED_SENDERS", "facility", 227),
            mappings=dict(settings.mllp_mappings),
            max_message_bytes=settings.mllp_max_message_bytes,
            max_connections=settings.mllp_max_connections,
            timeout_s=settings.mllp_timeout_s,
        )


class MllpListener:
    """An MLLP server feeding one ClinicalIngest; ``start()`` (in a thread of its own), ``stop()``."""

    def __init__(
        self,
        config: MllpConfig,
        ingest: ClinicalIngest,
        registry: MappingRegistry,
        audit: Callable[[AuditEntry], None] | None = None,
    ) -> None:
        self.config = config
        self.ingest = ingest
        self.registry = registry
        self.audit = audit
        self.mappings = {key.strip(): self._mapping(key, name) for key, name in config.mappings.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=min(config.max_connections, 8), thread_name_prefix="mllp")
        self._connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = config.port

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        ingest: ClinicalIngest,
        registry: MappingRegistry,
        audit: Callable[[AuditEntry], None] | None,
    ) -> MllpListener:
        return cls(MllpConfig.from_settings(settings), ingest, registry, audit)

    def _mapping(self, key: str, name: str) -> Mapping:
        """A configured mapping, refused at start-up when unknown or unusable."""
        try:
            mapping = self.registry.load(name)
        except (UnknownMapping, MappingError) as error:
            raise ConfigurationError(f"FHIR_BRIDGE_MLLP_MAPPINGS: the mapping of {key!r}: {error}") from None
        try:
            self.registry.reader(mapping.source_format or "hl7v2")
        except UnknownMapping as error:
            raise ConfigurationError(f"FHIR_BRIDGE_MLLP_MAPPINGS: the mapping of {key!r}: {error}") from None
        return mapping

    # running -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one picked for port 0)."""
        return self._port

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._server is None:
            raise ConfigurationError(f"the MLLP listener cannot listen on {self.config.host}:{self.config.port}")
        log.info("HL7 v2 MLLP listener on %s:%d", self.config.host, self.port)
        if not self.config.senders:
            log.warning(
                "the MLLP listener allows no sender (FHIR_BRIDGE_MLLP_ALLOWED_SENDERS): every connection is closed"
            )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, self.config.host, self.config.port, limit=READ_SIZE)
            )
            self._port = self._server.sockets[0].getsockname()[1]
        except OSError as error:
            log.error("the MLLP listener cannot listen on %s:%d: %s", self.config.host, self.config.port, error)
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for writer in list(self._writers):  # open connections end (a message being written finishes first)
                writer.close()
            connections = asyncio.all_tasks(loop)
            loop.run_until_complete(asyncio.wait(connections, timeout=30) if connections else asyncio.sleep(0))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

    def stop(self) -> None:
        """Stop listening; connections in progress end, messages being written finish first."""
        loop = self._loop
        if loop is not None and self._thread is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=30)
        self._workers.shutdown(wait=True)

    # one connection ----------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "unknown"
        if not any(sender.reaches(address) for sender in self.config.senders):
            log.warning("MLLP connection from %s refused: no allowed sender at that address", address)
            self._record(mllp_entry("CONNECT", "", address, 403, f"connection from {address} refused: not allowed"))
            writer.close()
            return
        if self._connections >= self.config.max_connections:
            log.warning("MLLP connection from %s refused: %d connections open", address, self._connections)
            writer.close()
            return
        self._connections += 1
        self._writers.add(writer)
        try:
            await self._frames(reader, writer, address)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("MLLP connection from %s dropped", address)
        finally:
            self._connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str) -> None:
        """Read frames as they arrive and answer each message before reading the next one's bytes."""
        buffer = bytearray()
        scanned = 1  # where the search for the current frame's end (and a restart) resumes
        oversize: bytes | None = None  # the head of a frame too large to keep, while its rest is skipped
        limit = self.config.max_message_bytes
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(READ_SIZE), self.config.timeout_s)
            except TimeoutError:
                state = "mid-message" if buffer or oversize is not None else "idle"
                log.info(
                    "MLLP connection from %s closed: silent for %.0f s (%s)", address, self.config.timeout_s, state
                )
                return
            if not chunk:
                if buffer.strip() or oversize is not None:
                    log.warning("MLLP connection from %s ended inside a frame: the partial message is dropped", address)
                return
            buffer += chunk
            while True:
                if oversize is not None:  # skip to the frame's end, then reject it
                    end = buffer.find(END)
                    if end < 0:
                        del buffer[: max(len(buffer) - 1, 0)]  # keep a trailing FS that may start the end
                        break
                    del buffer[: end + len(END)]
                    scanned = 1
                    ack, header = self._oversize(oversize, address)
                    oversize = None
                    await self._answer(writer, ack.render(header))
                    continue
                start = buffer.find(START)
                if start < 0:
                    if buffer.strip():
                        log.warning("MLLP: %d bytes outside a frame from %s skipped", len(buffer), address)
                    buffer.clear()
                    break
                if start > 0:
                    if buffer[:start].strip():
                        log.warning("MLLP: %d bytes before a frame from %s skipped", start, address)
                    del buffer[:start]
                    scanned = 1
                # bytes before ``scanned`` were searched already (a slow sender costs no rescans)
                end = buffer.find(END, max(scanned - 1, 1))
                restart = buffer.find(START, scanned)
                if restart >= 0 and (end < 0 or restart < end):  # a frame cut off by the start of another
                    log.warning(
                        "MLLP: a frame from %s was cut off by the next one; the partial message is dropped", address
                    )
                    del buffer[:restart]
                    scanned = 1
                    continue
                if end < 0:
                    scanned = len(buffer)
                    if len(buffer) - 1 > limit:
                        oversize = bytes(buffer[1 : 1 + HEADER_BYTES])
                        del buffer[: max(len(buffer) - 1, 0)]
                        scanned = 1
                    break
                payload = bytes(buffer[1:end])
                del buffer[: end + len(END)]
                scanned = 1
                if len(payload) > limit:
                    ack, header = self._oversize(payload[:HEADER_BYTES], address)
                else:
                    loop = asyncio.get_running_loop()
                    ack, header = await loop.run_in_executor(self._workers, self.handle, payload, address)
                await self._answer(writer, ack.render(header))

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, message: bytes) -> None:
        writer.write(START + message + END)
        await writer.drain()

    def _oversize(self, head: bytes, address: str) -> tuple[Ack, Header | None]:
        header = _header(head)
        reason = (
            f"the message is larger than {self.config.max_message_bytes} bytes (FHIR_BRIDGE_MLLP_MAX_MESSAGE_BYTES)"
        )
        log.warning("MLLP: a message from %s rejected: %s", address, reason)
        self._audit(header, address, 403, f"rejected: {reason}")
        return Ack("AR", problems=[Problem(reason, code=207)]), header

    # one message -------------------------------------------------------------------------------
    def handle(self, payload: bytes, address: str) -> tuple[Ack, Header | None]:
        """The acknowledgment of one message (and the header it answers); writes what the message holds."""
        try:
            header = read_header(payload)
        except NotHl7 as error:
            log.warning("MLLP: a frame from %s holds no HL7 v2 message (%s)", address, error)
            self._audit(None, address, 403, f"rejected: {error}")
            return Ack("AR", problems=[Problem(str(error), "MSH", code=100)]), None
        facility = header.sending_facility.partition("^")[0]
        if not any(sender.admits(facility, address) for sender in self.config.senders):
            reason = f"the sending facility {facility or '(none)'} at {address} is not allowed to send here"
            log.warning("MLLP: message %s rejected: %s", header.control_id, reason)
            self._audit(header, address, 403, f"rejected: {reason}")
            return Ack("AR", problems=[Problem(reason, "MSH-4", code=207)]), header
        mapping = self._mapping_for(header)
        if mapping is None:
            reason = f"no mapping for {header.message_type or 'a message without type'} (FHIR_BRIDGE_MLLP_MAPPINGS)"
            self._audit(header, address, 403, f"rejected: {reason}")
            return Ack("AR", problems=[Problem(reason, "MSH-9", code=200)]), header
        key = self.ingest.message_key(
            "mllp", header.sending_application, facility, header.control_id, payload.decode("latin-1")
        )
        if self.ingest.committed(key):
            text = f"message {header.control_id} was received and stored before: nothing written again"
            self._audit(header, address, 200, f"duplicate of a stored message: {text}", f"Provenance/{key}")
            return Ack("AA", text), header
        return self._ingest(header, mapping, payload, address, key), header

    def _mapping_for(self, header: Header) -> Mapping | None:
        for key in (header.message_type, header.code, "*"):
            if key and key in self.mappings:
                return self.mappings[key]
        return None

    def _ingest(self, header: Header, mapping: Mapping, payload: bytes, address: str, key: str) -> Ack:
        sender = (
            f"sending application {header.sending_application or '-'}, facility "
            f"{header.sending_facility or '-'} at {address}, message control ID {header.control_id}"
        )
        results: list[RecordResult] = []
        try:
            reader = self.registry.reader(mapping.source_format or "hl7v2")
            encoding = header.codec or mapping.encoding  # MSH-18 says how the message is encoded
            records = reader.read(io.BytesIO(payload), ReaderOptions(mapping.delimiter, encoding))
            summary = self.ingest.ingest(
                mapping,
                records,
                Source(CHANNEL, sender),
                atomic=True,
                on_result=results.append,
                batch_size=ATOMIC_BATCH,
                provenance_id=key,
            )
        except Exception as error:  # a defect of ours or of a plugin reader: the sender may try again
            log.error("MLLP: message %s could not be processed (%s)", header.control_id, type(error).__name__)
            reason = f"the message could not be processed ({type(error).__name__}); send it again later"
            self._audit(header, address, 503, reason)
            return Ack("AR", problems=[Problem(reason, code=207)])
        failed = [result for result in results if result.status == "failed"]
        if failed:
            problems = _problems(results)
            detail = f"{len(failed)} of {len(results)} records failed: " + "; ".join(p.message for p in problems)
            self._audit(header, address, MLLP_ACK_STATUS["AE"], f"error, nothing stored: {detail}")
            return Ack("AE", problems=problems)
        if summary.not_written:  # the store refused the transaction: the sender should retry
            reason = next((e.reason for r in results for e in r.errors), "the store could not write the message")
            self._audit(header, address, 503, reason)
            return Ack("AR", problems=[Problem(reason, code=207)])
        if not results:
            reason = "the message holds no record to map"
            self._audit(header, address, MLLP_ACK_STATUS["AE"], reason)
            return Ack("AE", problems=[Problem(reason, code=100)])
        text = f"{summary.created} created, {summary.updated} updated, {summary.unchanged} unchanged"
        entity = f"Provenance/{summary.provenance[0]}" if summary.provenance else None
        self._audit(header, address, MLLP_ACK_STATUS["AA"], f"accepted through {mapping.name}: {text}", entity)
        return Ack("AA", text)

    # the audit trail ---------------------------------------------------------------------------
    def _audit(self, header: Header | None, address: str, status: int, outcome: str, entity: str | None = None) -> None:
        message_type = (header.message_type if header else "") or "unknown"
        facility = header.sending_facility.partition("^")[0] if header else ""
        control = f" {header.control_id}" if header else ""
        detail = f"{message_type} message{control} from {facility or 'unknown facility'} at {address}: {outcome}"
        self._record(mllp_entry(message_type, facility, address, status, detail, entity))

    def _record(self, entry: AuditEntry) -> None:
        record(self.audit, entry, "an HL7 v2 message")


def _header(payload: bytes) -> Header | None:
    try:
        return read_header(payload)
    except NotHl7:
        return None


def _problems(results: list[RecordResult]) -> list[Problem]:
    """ERR segments for the failed records: the k-th record is the message's k-th order (OBR)."""
    problems = []
    for occurrence, result in enumerate(results, start=1):
        for error in result.errors:
            column = error.column if is_location(error.column) else None
            segment_occurrence = occurrence if column and column.startswith(("OBR", "ORC")) else 1
            message = error.reason if column or not error.column else f"{error.column}: {error.reason}"
            problems.append(Problem(message, column, segment_occurrence, _code(error.reason)))
    return problems


def _code(reason: str) -> int:
    """The HL7 error code (table 0357) of a mapping problem."""
    text = reason.lower()
    if "missing" in text or "empty" in text or "needed" in text:
        return 101
    if "unknown code" in text or "does not match" in text:
        return 103
    if "stored" in text or "several" in text or "patient" in text:
        return 204
    if "date" in text or "not a" in text or "valid" in text:
        return 102
    if "message" in text and ("not" in text or "an " in text):
        return 200
    return 207
