"""The STOW-RS multipart parser: framing variants real senders produce, and memory that stays flat."""

from __future__ import annotations

import os
import random
import tracemalloc

import pytest

from fhir_bridge.api.media_types import parse_media_type
from fhir_bridge.api.multipart import MultipartError, MultipartParser


def _body(parts: list[bytes], boundary: str, newline: bytes = b"\r\n", preamble: bytes = b"", lengths: bool = False):
    out = preamble
    for part in parts:
        out += f"--{boundary}  ".encode() + newline + b"Content-Type: application/dicom" + newline
        if lengths:
            out += b"Content-Length: %d" % len(part) + newline
        out += newline + part + newline
    return out + f"--{boundary}--".encode() + newline + b"epilogue, ignored"


def _parse(data: bytes, boundary: str, chunk: int) -> list:
    parser = MultipartParser(boundary)
    parts = []
    for start in range(0, len(data), chunk):
        parts += parser.feed(data[start : start + chunk])
    return parts + parser.finish()


@pytest.fixture(scope="module")
def contents() -> list[bytes]:
    """Binary parts that contain near-delimiters: the boundary as a prefix of other text, CR LF dashes."""
    generator = random.Random(7)
    parts = [
        generator.randbytes(generator.randint(0, 3000)) + b"\r\n--frontierX" + generator.randbytes(9) for _ in range(40)
    ]
    return [*parts, b"", b"\r\n--front", b"--frontier-not-a-delimiter"]


@pytest.mark.parametrize("chunk", [1, 3, 64, 4096, 1 << 20])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("preamble", [b"", b"\r\n", b"a preamble\r\n"], ids=["none", "blank", "text"])
def test_parts_come_out_exactly_as_sent(contents, chunk, newline, preamble):
    parts = _parse(_body(contents, "frontier", newline, preamble), "frontier", chunk)
    assert [p.content.read() for p in parts] == contents
    assert all(p.complete and p.headers["content-type"] == "application/dicom" for p in parts)
    assert [p.index for p in parts] == list(range(len(contents)))


def test_per_part_content_length_headers_are_accepted(contents):
    parts = _parse(_body(contents, "frontier", lengths=True), "frontier", 1000)
    assert [p.content.read() for p in parts] == contents
    assert parts[3].headers["content-length"] == str(len(contents[3]))


def test_a_last_delimiter_without_dashes_or_line_end_closes_the_body():
    data = b"--b0undary\r\n\r\nfirst\r\n--b0undary\r\n\r\nsecond\r\n--b0undary"
    parts = _parse(data, "b0undary", 5)
    assert [p.content.read() for p in parts] == [b"first", b"second"]
    assert all(p.complete for p in parts)


def test_a_body_cut_inside_a_part_marks_that_part_incomplete():
    data = _body([b"one", b"two" * 100], "cut")[:-60]
    parts = _parse(data, "cut", 16)
    assert [p.complete for p in parts] == [True, False]


def test_a_body_without_the_boundary_is_an_error():
    with pytest.raises(MultipartError):
        _parse(b"no delimiter here at all", "missing", 10)


def test_headers_without_end_are_an_error():
    with pytest.raises(MultipartError):
        _parse(b"--h\r\n" + b"X-Long: " + b"a" * 20_000, "h", 4096)


@pytest.mark.parametrize(
    ("header", "boundary"),
    [
        ('multipart/related; type="application/dicom"; boundary="0f3cf5c0-70e0-41ef"', "0f3cf5c0-70e0-41ef"),
        ("multipart/related; type=application/dicom; boundary=0f3cf5c0-70e0-41ef", "0f3cf5c0-70e0-41ef"),
        ('Multipart/Related;boundary="a b:c";type="application/dicom"', "a b:c"),
    ],
)
def test_quoted_and_unquoted_boundaries(header, boundary):
    media = parse_media_type(header)
    assert media.value == "multipart/related"
    assert media.parameters == {"type": "application/dicom", "boundary": boundary}


def test_a_100_mb_body_of_2000_parts_streams_in_flat_memory():
    """Memory is bounded by one chunk and one spooled part, not by the request (~100 MB here)."""
    part = os.urandom(50_000)
    head = b"--flat\r\nContent-Type: application/dicom\r\n\r\n"
    tracemalloc.start()
    try:
        parser = MultipartParser("flat")
        count = size = 0
        for _ in range(2000):
            for piece in (head, part[:20_000], part[20_000:], b"\r\n"):
                for finished in parser.feed(piece):
                    count += 1
                    size += finished.size
                    finished.close()
        for finished in parser.feed(b"--flat--\r\n") + parser.finish():
            count += 1
            size += finished.size
            finished.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 2000 and size == 2000 * len(part)
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while parsing {size} bytes"
