"""Input readers: HL7 v2 ORU^R01 records, and streaming (a record is yielded before the input is read whole)."""

from __future__ import annotations

import io
from pathlib import Path

from fhir_bridge.mapping.clinical import ReaderOptions
from fhir_bridge.mapping.clinical.hl7v2 import Hl7v2Reader
from fhir_bridge.mapping.clinical.readers import CsvReader, JsonReader, NdjsonReader

EXAMPLE = Path(__file__).parent.parent / "mappings" / "examples" / "radiology-report.hl7"


def _records(data: bytes) -> list:
    return list(Hl7v2Reader().read(io.BytesIO(data), ReaderOptions(encoding="utf-8")))


def test_each_order_of_each_message_is_a_record_keyed_by_hl7_positions():
    first, second = _records(EXAMPLE.read_bytes())
    assert (first.row, first.line, second.row, second.line) == (1, 5, 2, 11)  # lines of the file
    record = first.data
    assert record["PID-3"] == "PID-00001" and record["PID-3.4.1"] == "HOSP" and record["PID-3.5"] == "MR"
    assert record["OBR-7"] == "20240305120000+0100" and record["OBR-25"] == "F" and record["OBR-4.2"] == "MR breast"
    assert record["ZDS-1.1"] == "1.2.826.0.1.3680043.10.1234.1"
    assert record["observations"]["19005-8"] == "Suspicious for malignancy (BI-RADS 5) & biopsy advised."  # \\T\\
    assert record["text"].splitlines()[0] == "MR breast with contrast."  # repetitions are lines
    assert len(record["OBX"]) == 2
    assert second.data["text"].splitlines()[:2] == ["CT chest.", "Findings: 18 mm spiculated nodule, right upper lobe."]
    assert "ZDS-1.1" not in second.data


def test_the_mr_identifier_is_the_patient_id_and_mllp_framing_is_accepted():
    message = (
        "\x0bMSH|^~\\&|RIS|H|||20240101||ORU^R01|1|P|2.5\r"
        "PID|1||N123^^^NAT^NI~M456^^^HOSP&1.2.3&ISO^MR\r"
        "OBR|1||F1|X^Y|||20240101\r"
        "OBR|2||F2|X^Y|||20240102\r\x1c\r"
    )
    records = _records(message.encode())
    assert [r.data["OBR-3"] for r in records] == ["F1", "F2"]
    assert records[0].data["PID-3"] == "M456" and records[0].data["PID-3.4.2"] == "1.2.3"


def test_other_messages_are_reported_not_guessed_at():
    records = _records(
        b"MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5\rPID|1||X\r"
        b"MSH|^~\\&|A|B|||20240101||ORU^R01|2|P|2.5\rPID|1||X\r"
        b"garbage line\r"
    )
    assert [(r.row, r.column) for r in records] == [(1, "MSH-9"), (2, "OBR")]
    assert "ADT^A01" in records[0].error
    assert "no OBR" in records[1].error
    broken = _records(b"MSH|^~\\&|A\rPID|1\rOBR|1|\r")
    assert broken[0].data is None and broken[0].column == "MSH"


class _Feed(io.RawIOBase):
    """A stream of many rows made on demand, counting what was read."""

    def __init__(self, head: bytes, row: bytes, rows: int) -> None:
        self.chunks = iter([head, *(row for _ in range(rows))] if head else [row] * rows)
        self.pending = b""
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        self.read_bytes += size
        return size


def test_readers_yield_records_before_the_input_is_read_whole():
    for reader, head, row in (
        (CsvReader(), b"a,b\n", b"1,2\n"),
        (NdjsonReader(), b"", b'{"a": 1}\n'),
        (JsonReader(), b"[", b'{"a": 1},'),
    ):
        feed = _Feed(head, row, 200_000)  # ~1.6 MB
        records = reader.read(io.BufferedReader(feed), ReaderOptions())
        first = next(records)
        assert first.data is not None
        assert feed.read_bytes < 300_000, type(reader).__name__
        records.close()
