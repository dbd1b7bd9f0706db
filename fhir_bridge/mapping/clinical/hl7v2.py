"""HL7 v2 ORU^R01 result messages as source records: one record per order (OBR), read with python-hl7.

python-hl7 parses the message with the encoding characters its MSH declares and decodes escape
sequences (``\\F\\``, ``\\.br\\``...). Each record is flat, keyed as HL7 people write positions:

- ``OBR-7`` (first component of the field), ``PID-3.1`` (component), ``PID-3.4.2`` (sub-component),
  for MSH, PID, PV1, ORC, OBR and any other segment of the order, Z-segments included; PID-3 is
  the repetition whose identifier type (PID-3.5) is ``MR``, else the first;
- ``PID-3[1].1``: a component of a field's second repetition (repetitions count from 0), and
  ``PID-3[*]``: the field's repetitions as a list of records (``PID-3.1``...), to repeat a resource over;
- ``OBX``: the order's OBX segments as a list of such records, each with its ``value`` (OBX-5 as
  text; a structured numeric ``^182`` is ``182``, its comparator ``>`` in ``comparator``), reached
  as ``OBX[0].OBX-5.2`` or repeated over by a resource's ``forEach: OBX``;
- ``observations``: the text of the order's OBX-5 values by observation code (OBX-3.1), lines
  joined, e.g. ``observations.19005-8`` for the impression; ``text``: all textual OBX values;
  ``notes``: the NTE comments.

A file or body may hold many messages (MLLP framing and FHS/BHS batch envelopes are accepted);
records count messages, so a problem names the message (row) and the line of its OBR.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import hl7
from hl7.containers import Repetition

from fhir_bridge.mapping.clinical.readers import ReaderOptions, SourceRecord, text_of

TEXT_TYPES = frozenset({"TX", "FT", "ST"})
COMPARATORS = frozenset({">", "<", ">=", "<=", "=", "<>"})  # SN's first component
ENVELOPE = frozenset({"FHS", "FTS", "BHS", "BTS"})
MLLP = "\x0b\x1c"


def _repetitions(field: Any) -> list[list[list[str]]]:
    """A field as repetitions of components of sub-components (strings, still escaped)."""
    if isinstance(field, str):
        return [[[field]]]
    repetitions = list(field) if any(isinstance(part, Repetition) for part in field) else [field]
    result = []
    for repetition in repetitions:
        components = []
        for component in repetition if isinstance(repetition, list) else [repetition]:
            components.append([str(s) for s in component] if isinstance(component, list) else [str(component)])
        result.append(components)
    return result


class _Message:
    def __init__(self, message: hl7.Message) -> None:
        self.message = message

    def text(self, value: str) -> str:
        return self.message.unescape(value).replace("\r", "\n") if "\\" in value else value

    def components(self, record: dict[str, Any], key: str, repetition: list[list[str]]) -> None:
        """``key`` (the first component), ``key.c`` and ``key.c.s`` of one repetition into ``record``."""
        for c, component in enumerate(repetition, start=1):
            for s, sub in enumerate(component, start=1):
                if sub == "":
                    continue
                value = self.text(sub)
                if c == 1 and s == 1:
                    record[key] = value
                if s == 1:
                    record[f"{key}.{c}"] = value
                record[f"{key}.{c}.{s}"] = value

    def flat(self, segment: Any) -> dict[str, Any]:
        name = str(segment[0])
        record: dict[str, Any] = {}
        for number in range(1, len(segment)):
            repetitions = _repetitions(segment[number])
            chosen = repetitions[0]
            if name == "PID" and number == 3:
                chosen = next((r for r in repetitions if len(r) > 4 and r[4][0] == "MR"), chosen)
            key = f"{name}-{number}"
            self.components(record, key, chosen)
            if name == "MSH" and number == 2:
                record[key] = str(segment[number])  # the encoding characters, as written
                continue
            items = []
            for index, repetition in enumerate(repetitions):  # PID-3[1].4.1; PID-3[*] lists them for forEach
                self.components(record, f"{key}[{index}]", repetition)
                item: dict[str, Any] = {}
                self.components(item, key, repetition)
                if item:
                    items.append(item)
            if items:
                record[f"{key}[*]"] = items
        return record

    def value_text(self, segment: Any) -> str:
        """OBX-5 as text: repetitions are lines, components (of coded values) the first one's text.

        A structured numeric (SN: comparator^number^separator^number) is its number, or its range or
        ratio (``10-20``, ``1:128``); the comparator is the record's ``comparator``.
        """
        if len(segment) <= 5:
            return ""
        lines = []
        for repetition in _repetitions(segment[5]):
            if str(segment[2]) == "SN" and len(repetition) > 1:
                parts = [self.text(c[0]) for c in repetition[1:4]]
                lines.append("".join(parts) if len(parts) == 3 and parts[1] and parts[2] else parts[0])
            elif len(repetition) > 1 and str(segment[2]) in TEXT_TYPES:
                lines.append(self.text("^".join(c[0] for c in repetition)))
            else:
                lines.append(self.text(repetition[0][0]))
        return "\n".join(lines).strip("\n")


class Hl7v2Reader:
    """ORU^R01 messages -> one record per OBR; other message types are reported, not guessed at."""

    name = "hl7v2"
    media_types: tuple[str, ...] = ("x-application/hl7-v2+er7", "application/hl7-v2", "application/edi-hl7v2")
    suffixes: tuple[str, ...] = (".hl7", ".er7", ".oru")

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]:
        with text_of(stream, options.encoding, newline=None) as text:  # \r, \n and \r\n end segments
            yield from self._messages(text, options)

    def _messages(self, text: Any, options: ReaderOptions) -> Iterator[SourceRecord]:
        number = 0
        segments: list[tuple[int, str]] = []
        try:
            for line_number, line in enumerate(text, start=1):
                segment = line.strip("\n").strip(MLLP).strip()
                if not segment or segment[:3] in ENVELOPE:
                    continue
                if segment.startswith("MSH") and segments:
                    number += 1
                    yield from self._message(number, segments)
                    segments = []
                segments.append((line_number, segment))
        except UnicodeDecodeError as error:
            yield SourceRecord(number + 1, None, None, f"the input is not {options.encoding}: {error.reason}")
            return
        if segments:
            yield from self._message(number + 1, segments)

    def _message(self, number: int, segments: list[tuple[int, str]]) -> Iterator[SourceRecord]:
        first_line = segments[0][0]
        try:
            message = hl7.parse("\r".join(s for _, s in segments))
            kind = message.segment("MSH")[9]
            reps = _repetitions(kind)[0]
            code, event = reps[0][0], reps[1][0] if len(reps) > 1 else ""
        except Exception as error:  # python-hl7 raises several types for malformed text
            yield SourceRecord(number, None, first_line, f"not an HL7 v2 message: {error}", "MSH")
            return
        if (code, event) != ("ORU", "R01"):
            yield SourceRecord(number, None, first_line, f"an {code}^{event} message, not ORU^R01", "MSH-9")
            return
        reader = _Message(message)
        context: dict[str, Any] = {}
        pending: dict[str, Any] = {}
        current: dict[str, Any] | None = None
        current_line = first_line
        orders = 0
        for (line_number, _), segment in zip(segments, message, strict=True):
            name = str(segment[0])
            if name == "OBR":
                if current is not None:
                    yield SourceRecord(number, _finish(current), current_line)
                orders += 1
                current = {**context, **pending, **reader.flat(segment), "OBX": [], "notes": []}
                current_line, pending = line_number, {}
            elif name == "ORC":
                pending = reader.flat(segment)
            elif name == "PID":
                if current is not None:
                    yield SourceRecord(number, _finish(current), current_line)
                    current = None
                context = {k: v for k, v in context.items() if not k.startswith(("PID-", "PV1-"))}
                context.update(reader.flat(segment))
            elif name == "OBX" and current is not None:
                observation = reader.flat(segment)
                observation["value"] = reader.value_text(segment)
                if str(segment[2]) == "SN" and observation.get("OBX-5.1") in COMPARATORS:
                    observation["comparator"] = observation["OBX-5.1"]
                current["OBX"].append(observation)
            elif name == "NTE" and current is not None:
                current["notes"].append(reader.flat(segment).get("NTE-3", ""))
            elif current is not None:
                current.update(reader.flat(segment))
            else:
                context.update(reader.flat(segment))
        if current is not None:
            yield SourceRecord(number, _finish(current), current_line)
        elif orders == 0:
            yield SourceRecord(number, None, first_line, "the ORU^R01 message has no OBR (no result to map)", "OBR")


def _finish(record: dict[str, Any]) -> dict[str, Any]:
    """Add the convenience views of the OBX values: by observation code, and all text."""
    observations: dict[str, list[str]] = {}
    texts = []
    for observation in record["OBX"]:
        value = observation.get("value", "")
        if not value:
            continue
        code = observation.get("OBX-3.1")
        if code:
            observations.setdefault(code, []).append(value)
        if observation.get("OBX-2") in TEXT_TYPES:
            texts.append(value)
    record["observations"] = {code: "\n".join(values) for code, values in observations.items()}
    record["text"] = "\n".join(texts)
    record["notes"] = "\n".join(n for n in record["notes"] if n)
    return record
