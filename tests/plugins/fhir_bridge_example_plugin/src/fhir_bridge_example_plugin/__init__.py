"""An example input format for fhir-bridge: blocks of ``key: value`` lines, records separated by blank lines.

Some pathology systems export like this. The plugin only reads the format; the mapping it ships
(``mappings/pathology-keyvalue.yaml``) says what FHIR resources the records become.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fhir_bridge.mapping.clinical import ReaderOptions, SourceRecord
from fhir_bridge.mapping.clinical.readers import text_of


class KeyValueReader:
    name = "keyvalue"
    media_types = ("text/x-keyvalue",)
    suffixes = (".kv",)
    mappings_dir = Path(__file__).parent / "mappings"

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]:
        with text_of(stream, options.encoding, newline=None) as text:
            yield from self._records(text)

    @staticmethod
    def _records(text: Any) -> Iterator[SourceRecord]:
        record: dict[str, Any] = {}
        row, start = 0, None
        for number, line in enumerate(text, start=1):
            if not line.strip():
                if record:
                    row += 1
                    yield SourceRecord(row, record, start)
                record, start = {}, None
                continue
            key, separator, value = line.partition(":")
            start = start or number
            if not separator:
                row += 1
                yield SourceRecord(row, None, number, "a line without 'key: value'")
                record, start = {}, None
                continue
            record[key.strip()] = value.strip()
        if record:
            yield SourceRecord(row + 1, record, start)
