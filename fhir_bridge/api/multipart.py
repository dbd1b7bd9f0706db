"""A streaming parser for ``multipart/related`` bodies (RFC 2046 / RFC 2387), as STOW-RS senders write them.

Bytes are fed as they arrive; each part's content goes to a spooled temporary file (memory up to
``spool_bytes``, disk beyond), so memory does not grow with the size of the request or of a part.
Framing is by boundary alone: per-part ``Content-Length`` headers are accepted but not trusted,
line ends may be CRLF or bare LF, the first delimiter may open the body directly, and transport
padding after a delimiter is skipped. A body that stops inside a part yields that part marked
incomplete, so the caller can report it rather than half-store it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

from fhir_bridge.api.media_types import parse_media_type

SPOOL_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
_PREAMBLE, _BODY, _AFTER_DELIMITER, _HEADERS, _EPILOGUE = range(5)


class MultipartError(ValueError):
    """The body is not the multipart message its Content-Type announces."""


@dataclass
class Part:
    """One part: its headers (names in lower case) and its content, rewound and ready to read."""

    index: int
    headers: dict[str, str]
    content: IO[bytes]
    size: int = 0
    complete: bool = True

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return parse_media_type(value).value if value else None

    def close(self) -> None:
        self.content.close()


class MultipartParser:
    """Feed it the body chunk by chunk; it returns the parts completed so far."""

    def __init__(self, boundary: str, spool_bytes: int = SPOOL_BYTES) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("the multipart boundary is missing or longer than 200 characters")
        self._delimiter = b"\n--" + boundary.encode("latin-1")
        self._keep = len(self._delimiter) + 2  # bytes that may hold a delimiter not yet complete
        self._spool_bytes = spool_bytes
        self._buffer = bytearray(b"\n")  # so that a body opening with the delimiter matches it
        self._state = _PREAMBLE
        self._part: Part | None = None
        self._count = 0

    @property
    def parts_seen(self) -> int:
        return self._count

    def feed(self, data: bytes) -> list[Part]:
        self._buffer += data
        done: list[Part] = []
        position = 0
        while True:
            advanced = self._step(position, done)
            if advanced is None:
                break
            position = advanced
        del self._buffer[:position]
        return done

    def finish(self) -> list[Part]:
        """The end of the body: a part still open is returned marked incomplete."""
        done = self.feed(b"")
        if self._state in (_PREAMBLE, _BODY) and self._buffer.rstrip().endswith(self._delimiter):
            done += self.feed(b"--")  # a last delimiter with neither "--" nor a line end after it
        if self._state == _PREAMBLE and self._count == 0:
            raise MultipartError("the body holds no part delimited by the boundary of its Content-Type")
        if self._state == _BODY and self._part is not None:
            self._write(self._buffer, 0, len(self._buffer))
            done.append(self._close_part(complete=False))
        elif self._state == _HEADERS and self._buffer.strip():
            self._count += 1
            done.append(Part(self._count - 1, {}, _spool(16), 0, complete=False))
        self._buffer.clear()
        self._state = _EPILOGUE
        return done

    # the states ---------------------------------------------------------------------------
    def _step(self, position: int, done: list[Part]) -> int | None:
        """Advance from ``position``; the new position, or None when more data is needed."""
        if self._state in (_PREAMBLE, _BODY):
            return self._scan(position, done)
        if self._state == _AFTER_DELIMITER:
            return self._after_delimiter(position)
        if self._state == _HEADERS:
            return self._headers(position)
        return len(self._buffer) if position < len(self._buffer) else None  # epilogue: ignored

    def _scan(self, position: int, done: list[Part]) -> int | None:
        buffer = self._buffer
        search = position
        while True:
            found = buffer.find(self._delimiter, search)
            if found == -1:
                safe = max(position, len(buffer) - self._keep)
                if self._state == _BODY:
                    self._write(buffer, position, safe)
                return safe if safe > position else None
            after = found + len(self._delimiter)
            if after + 2 > len(buffer):  # cannot tell yet whether this is a delimiter line
                safe = max(position, found - 1)  # keep a CR that may belong to the delimiter
                if self._state == _BODY:
                    self._write(buffer, position, safe)
                return safe if safe > position else None
            follower = buffer[after : after + 2]
            if follower == b"--" or follower[:1] in (b"\r", b"\n", b" ", b"\t"):
                break
            search = found + 1  # the boundary text inside content, not a delimiter line
        if self._state == _BODY:
            end = found - 1 if found > position and buffer[found - 1] == 0x0D else found
            self._write(buffer, position, end)
            done.append(self._close_part(complete=True))
        self._state = _AFTER_DELIMITER
        return after

    def _after_delimiter(self, position: int) -> int | None:
        buffer = self._buffer
        if buffer[position : position + 2] == b"--":
            self._state = _EPILOGUE
            return position + 2
        line_end = buffer.find(b"\n", position)
        if line_end == -1:
            if len(buffer) - position > 1024:
                raise MultipartError("a boundary delimiter line does not end")
            return None
        self._state = _HEADERS
        return line_end + 1

    def _headers(self, position: int) -> int | None:
        buffer = self._buffer
        if buffer[position : position + 2] == b"\r\n" or buffer[position : position + 1] == b"\n":
            block_end, body_start = position, position + (2 if buffer[position] == 0x0D else 1)
        else:
            crlf, lf = buffer.find(b"\r\n\r\n", position), buffer.find(b"\n\n", position)
            candidates = [(i, i + 4) for i in (crlf,) if i != -1] + [(i, i + 2) for i in (lf,) if i != -1]
            if not candidates:
                if len(buffer) - position > MAX_HEADER_BYTES:
                    raise MultipartError(
                        f"the headers of part {self._count + 1} are longer than {MAX_HEADER_BYTES} bytes"
                    )
                return None
            block_end, body_start = min(candidates)
        headers = _parse_headers(bytes(buffer[position:block_end]))
        self._part = Part(self._count, headers, _spool(self._spool_bytes))
        self._count += 1
        self._state = _BODY
        return body_start

    # parts --------------------------------------------------------------------------------
    def _write(self, buffer: bytearray, start: int, end: int) -> None:
        if self._part is not None and end > start:
            self._part.content.write(memoryview(buffer)[start:end])
            self._part.size += end - start

    def _close_part(self, complete: bool) -> Part:
        part = self._part
        assert part is not None
        part.complete = complete
        part.content.seek(0)
        self._part = None
        return part


def _spool(max_size: int) -> IO[bytes]:
    """A part's content store; the Part owns it and the consumer closes it (``Part.close``)."""
    return tempfile.SpooledTemporaryFile(max_size=max_size)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").splitlines():
        name, separator, value = line.partition(":")
        if separator and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers
