"""Input formats: a byte stream in, source records out, one at a time (a 100,000-row file is never held whole).

Built in: ``csv``, ``ndjson``, ``json`` (an array of objects, or one object) and ``hl7v2``. A
hospital adds its own format as a Python package exposing a ``Reader`` under the entry point
group ``fhir_bridge.mappers``; the entry point's name is the format's name, and the package may
ship mapping files for it (``mappings_dir``). ``registry`` gathers the built-in and plugin readers.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable

import orjson

ENTRY_POINT_GROUP = "fhir_bridge.mappers"
CHUNK = 1 << 16
csv.field_size_limit(min(sys.maxsize, 1 << 27))  # report texts can be long; 128 MiB per field at most


@dataclass(frozen=True)
class SourceRecord:
    """One record of the input, or the reason a part of the input is not one.

    ``row`` counts records from 1; ``line`` is where the record starts in the file, when lines mean something.
    ``columns`` is the file's header, for formats that have one (CSV): a mapping naming a column it
    lacks is refused before any record is mapped.
    """

    row: int
    data: dict[str, Any] | None
    line: int | None = None
    error: str | None = None
    column: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReaderOptions:
    delimiter: str = ","
    encoding: str = "utf-8-sig"


@runtime_checkable
class Reader(Protocol):
    """An input format. ``read`` must stream: yield each record as soon as it is read."""

    name: str
    media_types: tuple[str, ...]
    suffixes: tuple[str, ...]

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]: ...


@contextmanager
def text_of(stream: BinaryIO, encoding: str, newline: str | None = "") -> Iterator[io.TextIOWrapper]:
    """``stream`` decoded; the caller's stream is left open afterwards (the wrapper is detached, not closed)."""
    codecs.lookup(encoding)  # an unknown encoding fails here, before any record
    text = io.TextIOWrapper(stream, encoding=encoding, newline=newline)
    try:
        yield text
    finally:
        text.detach()


class CsvReader:
    name = "csv"
    # application/vnd.ms-excel: what Windows browsers send for a .csv file
    media_types: tuple[str, ...] = (
        "text/csv",
        "application/csv",
        "text/tab-separated-values",
        "application/vnd.ms-excel",
    )
    suffixes: tuple[str, ...] = (".csv", ".tsv")

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]:
        with text_of(stream, options.encoding) as text:
            yield from self._rows(csv.reader(text, delimiter=options.delimiter))

    @staticmethod
    def _rows(rows: Any) -> Iterator[SourceRecord]:
        try:
            header = next(rows, None)
        except (csv.Error, UnicodeDecodeError) as error:
            yield SourceRecord(1, None, 1, f"the header cannot be read: {error}")
            return
        if header is None:
            return
        header = [name.strip() for name in header]
        columns = tuple(header)
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            yield SourceRecord(1, None, 1, f"the header names the column(s) {', '.join(duplicates)} more than once")
            return
        row, line = 0, rows.line_num + 1
        while True:
            try:
                values = next(rows, None)
            except (csv.Error, UnicodeDecodeError) as error:
                yield SourceRecord(row + 1, None, line, f"the file cannot be read from here on: {error}")
                return
            if values is None:
                return
            if not any(v.strip() for v in values):
                line = rows.line_num + 1
                continue
            row += 1
            if len(values) > len(header):
                yield SourceRecord(
                    row,
                    None,
                    line,
                    f"the row has {len(values)} fields, the header {len(header)} columns",
                    columns=columns,
                )
            else:
                values += [""] * (len(header) - len(values))  # a short row: its last columns are empty
                yield SourceRecord(row, dict(zip(header, values, strict=True)), line, columns=columns)
            line = rows.line_num + 1


class NdjsonReader:
    name = "ndjson"
    media_types: tuple[str, ...] = (
        "application/x-ndjson",
        "application/ndjson",
        "application/fhir+ndjson",
        "application/jsonl",
    )
    suffixes: tuple[str, ...] = (".ndjson", ".jsonl")

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]:
        row = 0
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            row += 1
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield SourceRecord(row, None, number, f"not valid JSON: {error}")
                continue
            if isinstance(data, dict):
                yield SourceRecord(row, data, number)
            else:
                yield SourceRecord(row, None, number, f"a record is a JSON object, not {type(data).__name__}")


class JsonReader:
    """A JSON array of objects read element by element (or one object)."""

    name = "json"
    media_types: tuple[str, ...] = ("application/json",)
    suffixes: tuple[str, ...] = (".json",)

    def read(self, stream: BinaryIO, options: ReaderOptions) -> Iterator[SourceRecord]:
        with text_of(stream, options.encoding) as text:
            yield from self._elements(text, options)

    def _elements(self, text: io.TextIOWrapper, options: ReaderOptions) -> Iterator[SourceRecord]:
        decoder = json.JSONDecoder()
        buffer, position, ended = "", 0, False

        def more() -> bool:
            nonlocal buffer, position, ended
            chunk = text.read(CHUNK) if not ended else ""
            if not chunk:
                ended = True
                return False
            buffer, position = buffer[position:] + chunk, 0
            return True

        def skip_space() -> str:
            nonlocal position
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n":
                    position += 1
                if position < len(buffer) or not more():
                    return buffer[position] if position < len(buffer) else ""

        try:
            first = skip_space()
            if first == "{":
                while more():
                    pass
                yield from self._one(buffer[position:])
                return
            if first != "[":
                if first:
                    yield SourceRecord(1, None, None, "the body is neither a JSON array of records nor one object")
                return
            position += 1
            row = 0
            while True:
                following = skip_space()
                if following == "]" and row == 0:
                    return
                row += 1
                while True:
                    try:
                        value, end = decoder.raw_decode(buffer, position)
                        break
                    except json.JSONDecodeError as error:
                        if not more():
                            yield SourceRecord(row, None, None, f"not valid JSON: {error.msg}")
                            return
                position = end
                if isinstance(value, dict):
                    yield SourceRecord(row, value, None)
                else:
                    yield SourceRecord(row, None, None, f"a record is a JSON object, not {type(value).__name__}")
                separator = skip_space()
                if separator == "]":
                    return
                if separator != ",":
                    yield SourceRecord(row + 1, None, None, "not valid JSON: expected , or ] after a record")
                    return
                position += 1
        except UnicodeDecodeError as error:
            yield SourceRecord(1, None, None, f"the body is not {options.encoding}: {error.reason}")

    @staticmethod
    def _one(text: str) -> Iterator[SourceRecord]:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            yield SourceRecord(1, None, None, f"not valid JSON: {error}")
            return
        yield SourceRecord(1, value, None)
