"""HL7 v2 original-mode acknowledgments: the MSH of a received message, and the ACK that answers it.

Only what an ACK needs is read here (MSH-3 to MSH-12, with the message's own encoding characters);
the message itself is read by the clinical mapping path (``mapping.clinical.hl7v2``). The ACK is
``MSH`` + ``MSA`` (+ ``ERR`` per problem, v2.5 style: location ERR-2, HL7 error code ERR-3 from
table 0357, severity ERR-4, user message ERR-8); ``MSA-3`` repeats the first problem for the
engines that show only it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count

ENCODING = "^~\\&"
# HL7 table 0357 (message error condition codes) used in ERR-3
ERROR_CODES = {
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    202: "Unsupported processing id",
    204: "Unknown key identifier",
    207: "Application internal error",
}
# HL7 table 0211 (alternate character sets) -> Python codecs, for MSH-18
CHARSETS = {
    "ASCII": "ascii",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UNICODE UTF-16": "utf-16",
}
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:-(\d+)(?:\.(\d+))?(?:\.(\d+))?)?$")
_SEQUENCE = count(1)


class NotHl7(ValueError):
    """The frame holds no HL7 v2 message (no MSH segment with its separators)."""


@dataclass(frozen=True)
class Header:
    """The MSH fields an ACK and the routing need (components as sent, unescaped only where they are names)."""

    field_separator: str
    encoding: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str  # MSH-9.1^MSH-9.2, e.g. ORU^R01
    control_id: str
    processing_id: str
    version: str
    charset: str = ""  # MSH-18, e.g. 8859/1 or UNICODE UTF-8

    @property
    def codec(self) -> str | None:
        """The Python codec of MSH-18 (HL7 table 0211); None when absent or not one the listener knows."""
        return CHARSETS.get(self.charset.strip().upper())

    @property
    def code(self) -> str:
        return self.message_type.partition("^")[0]

    @property
    def event(self) -> str:
        return self.message_type.partition("^")[2]


def read_header(payload: bytes) -> Header:
    """The MSH of a message (any ASCII-compatible character set: MSH is read before MSH-18 is known)."""
    text = payload.decode("latin-1").lstrip("\r\n")
    if not text.startswith("MSH") or len(text) < 8:
        raise NotHl7("the frame does not start with an MSH segment")
    separator, encoding = text[3], text[4:8]
    if separator.isalnum() or separator in "\r\n" or len(set(encoding)) < 4 or separator in encoding:
        raise NotHl7("the MSH segment has no valid field separator and encoding characters (MSH-1, MSH-2)")
    segment = re.split(r"[\r\n]", text, maxsplit=1)[0]
    fields = segment.split(separator)  # fields[n] is MSH-(n+1): MSH-1 is the separator itself

    def value(number: int, components: int = 1) -> str:
        raw = fields[number - 1] if number - 1 < len(fields) else ""
        parts = raw.split(encoding[1])[0].split(encoding[0])  # first repetition
        return "^".join(parts[:components]).rstrip("^")

    return Header(
        separator,
        encoding,
        value(3),
        value(4),
        value(5),
        value(6),
        value(9, 2),
        value(10),
        value(11),
        value(12),
        value(18),
    )


@dataclass
class Problem:
    """One ERR segment: what failed, where (``OBR-25``, ``PID-3.1``; occurrence of the segment) and its code."""

    message: str
    location: str | None = None
    occurrence: int = 1
    code: int = 207
    severity: str = "E"


@dataclass
class Ack:
    """An acknowledgment: AA (accepted), AE (error in the content: fix and send again), AR (rejected)."""

    code: str
    text: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def render(self, header: Header | None) -> bytes:
        """The ACK message (segments ended by CR) answering ``header`` (None: the frame had no usable MSH)."""
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
        control = f"ACK{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}{next(_SEQUENCE):06d}"
        h = header
        event = h.event if h else ""
        msh = [
            "MSH",
            ENCODING,
            _escape(h.receiving_application if h else "FHIR_BRIDGE"),
            _escape(h.receiving_facility if h else ""),
            _escape(h.sending_application if h else ""),
            _escape(h.sending_facility if h else ""),
            now,
            "",
            f"ACK^{_escape(event)}^ACK" if event else "ACK",
            control,
            _escape(h.processing_id or "P") if h else "P",
            _escape(h.version or "2.5.1") if h else "2.5.1",
        ]
        text = self.text or (self.problems[0].message if self.problems else None)
        msa = ["MSA", self.code, _escape(h.control_id) if h else ""]
        if text:
            msa.append(_escape(text)[:80])
        segments = ["|".join(msh), "|".join(msa)]
        for problem in self.problems:
            code = problem.code
            error_code = f"{code}^{ERROR_CODES.get(code, 'Application internal error')}^HL70357"
            segments.append(
                "|".join(
                    ["ERR", "", _location(problem), error_code, problem.severity, "", "", "", _escape(problem.message)]
                )
            )
        return ("\r".join(segments) + "\r").encode("utf-8")


def _location(problem: Problem) -> str:
    """ERR-2 (ERL): segment ID ^ sequence ^ field ^ repetition ^ component ^ sub-component."""
    if problem.location is None:
        return ""
    match = _LOCATION.match(problem.location)
    if match is None:
        return ""
    segment, field_number, component, sub = match.groups()
    parts = [segment, str(problem.occurrence)]
    if field_number:
        parts += [field_number, "1"]
        if component:
            parts.append(component)
            if sub:
                parts.append(sub)
    return "^".join(parts)


def is_location(column: str | None) -> bool:
    """Whether a problem's column names an HL7 position (``OBR-25``, ``PID-3.1``) or a segment (``OBR``)."""
    return column is not None and _LOCATION.match(column) is not None


def _escape(text: str) -> str:
    """A value inside a field of the ACK (HL7 escape sequences; CR and LF as spaces)."""
    escaped = (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
    )
    return escaped.replace("\r", " ").replace("\n", " ")
