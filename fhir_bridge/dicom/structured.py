"""Read nested sequences of a header (SR content trees, SEG segments, RTSTRUCT ROIs) as plain values.

A *shape* says which attributes of a sequence's items are read and how: ``"text"`` (a string, or
a list of strings for several values), ``"codes"`` (coded entries, as the reader's code attributes)
or another shape (a nested sequence; a shape may contain itself, as an SR content item contains
content items). Attributes a shape does not name are never read, so person names in an SR tree
(PNAME items, observer sequences) never leave pydicom. Like the reader, a defective value is left
out and named in ``defects``.

Untrusted input can nest deeply or carry millions of items: past ``MAX_ITEMS`` items in all or
``MAX_DEPTH`` levels, the whole structure is dropped (and named a defect) rather than half-read,
so a report is never mapped from a tree cut at an arbitrary point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.values import convert_value

MAX_ITEMS = 20_000
MAX_DEPTH = 48
CODE_PARTS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")

Shape = Mapping[str, Union[str, "Shape"]]


class _TooLarge(Exception):
    """The structure exceeds the reading budget."""


@dataclass
class Reading:
    """The state of reading one instance's structures: defects found, the item budget left, and the
    Python codecs of the instance's Specific Character Set (nested items inherit it)."""

    defects: list[str] = field(default_factory=list)
    encodings: list[str] = field(default_factory=lambda: convert_encodings(None))
    items_left: int = MAX_ITEMS


def plain_text(value: Any) -> str | list[str] | None:
    """A decoded DICOM value as text (a list for several values); None when absent, empty or binary."""
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        values = [text for text in (plain_text(v) for v in value) if isinstance(text, str)]
        return values or None
    if isinstance(value, bytes):
        return None  # undecoded binary: not text fhir-bridge can map
    text = str(value).strip().strip("\x00").strip()
    return text or None


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword")
    return tag


def tags(shapes: Mapping[str, Shape]) -> list[int]:
    """The top-level tags to read for ``shapes`` (keyword of a top-level sequence -> its items' shape)."""
    return [_tag(keyword) for keyword in shapes]


def read_structure(dataset: Dataset, keyword: str, shape: Shape, reading: Reading) -> list[dict[str, Any]]:
    """The items of the sequence ``keyword`` of ``dataset`` as dicts keyed by DICOM keyword; [] when absent."""
    try:
        return _sequence(dataset, keyword, shape, reading, 1)
    except _TooLarge:
        reading.defects.append(keyword)
        return []


def _sequence(dataset: Dataset, keyword: str, shape: Shape, reading: Reading, depth: int) -> list[dict[str, Any]]:
    if depth > MAX_DEPTH:
        raise _TooLarge
    tag = _tag(keyword)
    if tag not in dataset:
        return []
    try:
        sequence = dataset[tag].value
        items = list(sequence) if sequence else []
    except Exception:  # a broken sequence (bad length, undecodable item): leave it out
        reading.defects.append(keyword)
        return []
    result = []
    for item in items:
        reading.items_left -= 1
        if reading.items_left < 0:
            raise _TooLarge
        if isinstance(item, Dataset) and (read := _item(item, shape, reading, depth)):
            result.append(read)
    return result


def _item(item: Dataset, shape: Shape, reading: Reading, depth: int) -> dict[str, Any]:
    read: dict[str, Any] = {}
    for keyword, kind in shape.items():
        value: Any
        if kind == "text":
            value = _value(item, keyword, reading)
        elif kind == "codes":
            value = _codes(item, keyword, reading, depth)
        else:
            value = _sequence(item, keyword, kind, reading, depth + 1)  # type: ignore[arg-type]  # a nested shape
        if value:
            read[keyword] = value
    return read


def _value(item: Dataset, keyword: str, reading: Reading) -> str | list[str] | None:
    tag = _tag(keyword)
    if tag not in item:
        return None
    try:
        element = item.get_item(tag)
        if isinstance(element, RawDataElement):  # decoded directly: no DataElement is built for it (faster)
            return plain_text(convert_value(element.VR or dictionary_VR(tag), element, reading.encodings))
        return plain_text(item[tag].value)
    except Exception:  # a defective value (bad VR, odd length, undecodable text): leave it out
        reading.defects.append(keyword)
        return None


def _codes(item: Dataset, keyword: str, reading: Reading, depth: int) -> list[dict[str, str]]:
    """Coded entries as the reader's code attributes: {"CodeValue", "CodingSchemeDesignator", "CodeMeaning"}."""
    codes = []
    for entry in _sequence(item, keyword, _CODE, reading, depth + 1):
        code = {part: text for part in CODE_PARTS if isinstance(text := entry.get(part), str)}
        if code.get("CodeValue") or code.get("CodeMeaning"):
            codes.append(code)
    return codes


_CODE: Shape = dict.fromkeys(CODE_PARTS, "text")
