"""Media types of HTTP headers (RFC 9110): the one parser of Content-Type values in the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type: ``type/subtype`` in lower case and its parameters (names in lower case)."""

    value: str
    parameters: dict[str, str] = field(default_factory=dict)


def parse_media_type(header: str | None) -> MediaType:
    """Parse a Content-Type header; quoted and unquoted parameter values alike."""
    if not header or not header.strip():
        return MediaType("")
    message = Message()
    message["content-type"] = header
    parameters = {}
    for name, value in message.get_params(failobj=[], header="content-type")[1:]:
        parameters[name.lower()] = value if isinstance(value, str) else str(value)
    return MediaType(message.get_content_type().lower() if "/" in header.split(";")[0] else "", parameters)


def essence(header: str | None) -> str:
    """``type/subtype`` of a Content-Type or media range, lower case, without parameters ("" when absent).

    The cheap form for hot paths that only compare the type (every request passes the body limits).
    """
    return (header or "").split(";", 1)[0].strip().lower()
