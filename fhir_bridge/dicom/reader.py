"""Read the header of one DICOM instance: the attributes fhir-bridge maps, as plain values.

pydicom parses the header only (``stop_before_pixels``, ``specific_tags``), so a 2 GB multi-frame
file costs what a small one costs: the pixel data is skipped with a seek, after checking that it
is all there (a cut-off transfer is reported as truncated rather than half-stored). Real-world
defects are tolerated attribute by attribute: a value that cannot be decoded is left out and
named in ``DicomInstance.defects``; only the UIDs an instance cannot be stored without are fatal.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydicom
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.values import convert_value

from fhir_bridge.dicom import segmentation, sr
from fhir_bridge.dicom.structured import Reading, plain_text, read_structure, tags

# Failure reasons of a STOW-RS response (DICOM PS3.18 Table I.2-1 / PS3.4 Annex B status codes).
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122

DEFLATED = "1.2.840.10008.1.2.1.99"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR
DICOMDIR = "a DICOMDIR (media directory)"
IN_MEMORY_BYTES = 4 * 1024 * 1024
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN")
ITEM, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # what a UID looks like enough to name an instance by
CONFORMANT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")  # PS3.5 9.1: no leading zeros
MAX_UID_LENGTH = 64
# UIDs an instance is stored by; when not conformant they are replaced by derived ones (see ingest.dicom).
DERIVABLE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

# Values are text (or lists of text for multi-valued attributes).
TEXT_ATTRIBUTES = (
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "TimezoneOffsetFromUTC",
    "AccessionNumber",
    "StudyDescription",
    "SeriesDescription",
    "ReferringPhysicianName",
    "ReasonForTheRequestedProcedure",
    "Modality",
    "SeriesNumber",
    "InstanceNumber",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "Manufacturer",
    "ManufacturerModelName",
    "ContentLabel",
    "DocumentTitle",
    "ImageType",
    *sr.TEXT_ATTRIBUTES,
    *segmentation.TEXT_ATTRIBUTES,
)
# Values are lists of coded entries: {"CodeValue", "CodingSchemeDesignator", "CodeMeaning"}.
CODE_ATTRIBUTES = (
    "ProcedureCodeSequence",
    "AnatomicRegionSequence",
    "ConceptNameCodeSequence",
    "ReasonForRequestedProcedureCodeSequence",
)
# Read for the values nested in them; they are flattened into the attributes above.
NESTED_ATTRIBUTES = (
    "IssuerOfPatientIDQualifiersSequence",
    "RequestAttributesSequence",
    "IssuerOfAccessionNumberSequence",
)
# The Issuer of Accession Number, lifted as one item {LocalNamespaceEntityID, UniversalEntityID, UniversalEntityIDType}.
ISSUER_PARTS = ("LocalNamespaceEntityID", "UniversalEntityID", "UniversalEntityIDType")
ATTRIBUTES = (
    TEXT_ATTRIBUTES
    + CODE_ATTRIBUTES
    + ("UniversalEntityID", "UniversalEntityIDType", "IssuerOfAccessionNumberSequence", "LocalNamespaceEntityID")
)
_CODE_PARTS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")
_TAGS: list[int] = [
    *(tag for k in TEXT_ATTRIBUTES + CODE_ATTRIBUTES + NESTED_ATTRIBUTES if (tag := tag_for_keyword(k)) is not None),
    *tags(sr.SHAPES),
    *tags(segmentation.SHAPES),
]
_TAG_OF: dict[str, int] = {
    keyword: tag_for_keyword(keyword)  # type: ignore[misc]
    for keyword in (
        *TEXT_ATTRIBUTES,
        *CODE_ATTRIBUTES,
        *NESTED_ATTRIBUTES,
        *_CODE_PARTS,
        *ISSUER_PARTS,
        "MediaStorageSOPClassUID",
        "SourceApplicationEntityTitle",
        "TransferSyntaxUID",
    )
}
_REQUIRED_UIDS = {
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
    "SOPInstanceUID": "(0008,0018)",
}

# Untrusted input: pydicom's value checks would warn (and log) about values, which may be
# identifiers; defective values are handled per attribute here instead.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
logging.getLogger("pydicom").setLevel(logging.ERROR)


def is_conformant_uid(value: str) -> bool:
    """A UID as PS3.5 9.1 defines it: dot-separated numbers without leading zeros, at most 64 characters."""
    return len(value) <= MAX_UID_LENGTH and CONFORMANT_UID.match(value) is not None


class DicomReadError(Exception):
    """An instance that cannot be ingested; ``reason`` is safe to show (it never quotes values)."""

    def __init__(
        self, code: int, reason: str, sop_class_uid: str | None = None, sop_instance_uid: str | None = None
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid

    def __reduce__(self) -> tuple[Any, ...]:  # results travel back from the CLI's worker processes
        return (type(self), (self.code, self.reason, self.sop_class_uid, self.sop_instance_uid))


class NotAnInstance(DicomReadError):
    """A file that is not a DICOM instance at all (a DICOMDIR, a text file): a folder ingest skips it."""


@dataclass(frozen=True)
class DicomInstance:
    """The mapped attributes of one instance (by DICOM keyword) and facts about how it was read."""

    attributes: dict[str, Any]
    transfer_syntax: str | None = None
    source_ae_title: str | None = None
    defects: tuple[str, ...] = field(default_factory=tuple)
    nonconformant_uids: tuple[str, ...] = field(default_factory=tuple)  # keywords of DERIVABLE_UIDS

    @property
    def study_uid(self) -> str:
        return self.attributes["StudyInstanceUID"]

    @property
    def series_uid(self) -> str:
        return self.attributes["SeriesInstanceUID"]

    @property
    def sop_instance_uid(self) -> str:
        return self.attributes["SOPInstanceUID"]

    @property
    def sop_class_uid(self) -> str:
        return self.attributes["SOPClassUID"]


def read_path(path: str | os.PathLike[str]) -> DicomInstance:
    """Read a file; small files are read whole first, since pydicom's many seeks are slow on a file."""
    with Path(path).open("rb") as stream:
        if os.fstat(stream.fileno()).st_size <= IN_MEMORY_BYTES:
            return read_stream(io.BytesIO(stream.read()))
        return read_stream(stream)


def read_stream(stream: IO[bytes]) -> DicomInstance:
    """Read one instance from a seekable binary stream positioned at its start."""
    start = stream.tell()
    stream.seek(0, os.SEEK_END)
    size = stream.tell() - start
    stream.seek(start)
    _check_looks_like_dicom(stream.read(132), size)
    stream.seek(start)
    try:
        dataset = pydicom.dcmread(
            stream, stop_before_pixels=True, force=True, specific_tags=_TAGS, defer_size=1024 * 1024
        )
        meta = dataset.file_meta
        syntax = _read(meta, "TransferSyntaxUID", []) if meta is not None else None
        transfer_syntax = syntax if isinstance(syntax, str) else None
    except NotImplementedError:
        raise DicomReadError(TRANSFER_SYNTAX_NOT_SUPPORTED, "the transfer syntax cannot be read") from None
    except Exception as error:  # pydicom raises many types on broken input; its messages may quote values
        raise DicomReadError(CANNOT_UNDERSTAND, f"unreadable DICOM header ({type(error).__name__})") from None
    if meta is not None and _read(meta, "MediaStorageSOPClassUID", []) == MEDIA_STORAGE_DIRECTORY:
        raise NotAnInstance(CANNOT_UNDERSTAND, DICOMDIR)
    if transfer_syntax != DEFLATED:  # a deflated stream was inflated whole: zlib has checked it
        try:
            _check_complete(stream, start + size, dataset)
        except DicomReadError as error:  # name the instance to its sender when its UIDs were read
            error.sop_class_uid = _uid(dataset, "SOPClassUID")
            error.sop_instance_uid = _uid(dataset, "SOPInstanceUID")
            raise
    return _instance(dataset, transfer_syntax)


def _uid(dataset: Dataset, keyword: str) -> str | None:
    value = _read(dataset, keyword, [])
    return value if isinstance(value, str) and UID_PATTERN.match(value) else None


def _check_looks_like_dicom(head: bytes, size: int) -> None:
    """Part 10 files have 'DICM' at 128; files without a preamble start with a group 0002 or 0008 tag."""
    if size == 0:
        raise DicomReadError(CANNOT_UNDERSTAND, "empty file")
    if head[128:132] == b"DICM":
        return
    if len(head) >= 8 and (
        struct.unpack("<H", head[:2])[0] in (0x0002, 0x0008) or struct.unpack(">H", head[:2])[0] in (0x0002, 0x0008)
    ):
        return
    raise NotAnInstance(CANNOT_UNDERSTAND, "not a DICOM file")


def _check_complete(stream: IO[bytes], end: int, dataset: Dataset) -> None:
    """Refuse an instance whose header or pixel data was cut off (a truncated transfer)."""
    position = stream.tell()
    if position > end or _last_value_end(dataset) > end:
        raise DicomReadError(CANNOT_UNDERSTAND, "truncated: the header ends before its last attribute")
    if position == end:
        return
    little = dataset.original_encoding[1]
    endian = "<" if little is not False else ">"
    header = stream.read(12)
    if len(header) < 8:  # pydicom stops at a pixel data tag only after reading its whole element header
        return
    group, element = struct.unpack(f"{endian}HH", header[:4])
    if (group << 16 | element) not in PIXEL_TAGS:
        return
    # The VR says how the element is encoded (some writers switch to implicit VR for it).
    if len(header) == 12 and header[4:6] in PIXEL_VRS:
        length, value_start = struct.unpack(f"{endian}L", header[8:12])[0], position + 12
    else:
        length, value_start = struct.unpack(f"{endian}L", header[4:8])[0], position + 8
    if length != 0xFFFFFFFF:
        if value_start + length > end:
            raise DicomReadError(CANNOT_UNDERSTAND, "truncated: the pixel data is incomplete")
        return
    stream.seek(value_start)
    _check_fragments(stream, end, endian)


def _check_fragments(stream: IO[bytes], end: int, endian: str) -> None:
    """Walk the items of encapsulated pixel data by their headers (seeks only) to its delimiter."""
    while True:
        header = stream.read(8)
        if len(header) < 8:
            raise DicomReadError(CANNOT_UNDERSTAND, "truncated: the pixel data is incomplete")
        group, element, length = struct.unpack(f"{endian}HHL", header)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER:
            return
        if tag != ITEM or stream.tell() + length > end:
            raise DicomReadError(CANNOT_UNDERSTAND, "truncated: the pixel data is incomplete")
        stream.seek(length, os.SEEK_CUR)


def _last_value_end(dataset: Dataset) -> int:
    """Where the last value read ends: beyond the end of the stream, a value was cut short."""
    ends = [0]
    for tag in dataset.keys():  # noqa: SIM118 (iterating a Dataset yields converted elements)
        element = dataset.get_item(tag)
        if isinstance(element, RawDataElement) and element.length != 0xFFFFFFFF:
            ends.append(element.value_tell + element.length)
    return max(ends)


def _instance(dataset: Dataset, transfer_syntax: str | None) -> DicomInstance:
    defects: list[str] = []
    attributes: dict[str, Any] = {}
    encodings = _encodings(dataset, defects)
    for keyword in TEXT_ATTRIBUTES:
        value = _read(dataset, keyword, defects, encodings)
        if value is not None:
            attributes[keyword] = value
    for keyword in CODE_ATTRIBUTES:
        codes = _codes(dataset, keyword, defects)
        if codes:
            attributes[keyword] = codes
    _flatten_nested(dataset, attributes, defects)
    meta = dataset.file_meta
    if "SOPClassUID" not in attributes and meta is not None:
        fallback = _read(meta, "MediaStorageSOPClassUID", defects)
        if fallback:
            attributes["SOPClassUID"] = fallback
    nonconformant = _check_uids(attributes)
    _read_structures(dataset, attributes, Reading(defects, encodings))
    source = _read(meta, "SourceApplicationEntityTitle", defects) if meta is not None else None
    return DicomInstance(
        attributes, transfer_syntax, source if isinstance(source, str) else None, tuple(defects), nonconformant
    )


def _encodings(dataset: Dataset, defects: list[str]) -> list[str]:
    """The Python codecs of the dataset's Specific Character Set (the default repertoire when unreadable)."""
    try:
        return convert_encodings(dataset.get("SpecificCharacterSet"))
    except Exception:
        defects.append("SpecificCharacterSet")
        return convert_encodings(None)


def _flatten_nested(dataset: Dataset, attributes: dict[str, Any], defects: list[str]) -> None:
    """Issuer qualifiers (of the patient id, of the accession number) and the request's reason live in
    sequences; lift the values fhir-bridge maps."""
    for item in _items(dataset, "IssuerOfPatientIDQualifiersSequence", defects)[:1]:
        for keyword in ("UniversalEntityID", "UniversalEntityIDType"):
            value = _read(item, keyword, defects)
            if isinstance(value, str):
                attributes[keyword] = value
    for item in _items(dataset, "IssuerOfAccessionNumberSequence", defects)[:1]:
        issuer = {keyword: value for keyword in ISSUER_PARTS if isinstance(value := _read(item, keyword, defects), str)}
        if issuer:
            attributes["IssuerOfAccessionNumberSequence"] = [issuer]
    for item in _items(dataset, "RequestAttributesSequence", defects):
        reason = _read(item, "ReasonForTheRequestedProcedure", defects)
        if isinstance(reason, str):
            attributes.setdefault("ReasonForTheRequestedProcedure", reason)
        codes = _codes(item, "ReasonForRequestedProcedureCodeSequence", defects)
        if codes:
            attributes.setdefault("ReasonForRequestedProcedureCodeSequence", []).extend(codes)


def _read_structures(dataset: Dataset, attributes: dict[str, Any], reading: Reading) -> None:
    """The content tree of an SR, the segments of a SEG, the ROIs of an RTSTRUCT (see ``sr``, ``segmentation``)."""
    sop_class = attributes["SOPClassUID"]
    if sr.is_structured_report(sop_class):
        shapes = sr.SHAPES
    elif segmentation.is_segmentation(sop_class):
        shapes = segmentation.SHAPES
    else:
        return
    for keyword, shape in shapes.items():
        if items := read_structure(dataset, keyword, shape, reading):
            attributes[keyword] = items


def _check_uids(attributes: dict[str, Any]) -> tuple[str, ...]:
    """Refuse an instance without its UIDs; return the keywords of those present but not conformant.

    Hashing anonymisers write hex digests, some writers pad components with zeros: a PACS took such
    instances and forwards them, so they are stored, by UIDs derived from them (ingest.dicom).
    A SOP Class UID names a standard class and cannot be derived: a malformed one is refused.
    """
    sop_class = attributes.get("SOPClassUID") if isinstance(attributes.get("SOPClassUID"), str) else None
    sop_instance = attributes.get("SOPInstanceUID") if isinstance(attributes.get("SOPInstanceUID"), str) else None
    nonconformant = []
    for keyword, tag in (*_REQUIRED_UIDS.items(), ("SOPClassUID", "(0008,0016)")):
        value = attributes.get(keyword)
        if not value:
            raise DicomReadError(DOES_NOT_MATCH_SOP_CLASS, f"missing {keyword} {tag}", sop_class, sop_instance)
        if isinstance(value, str) and keyword in DERIVABLE_UIDS and not is_conformant_uid(value):
            nonconformant.append(keyword)
        elif not isinstance(value, str) or len(value) > MAX_UID_LENGTH or not UID_PATTERN.match(value):
            raise DicomReadError(
                DOES_NOT_MATCH_SOP_CLASS, f"{keyword} {tag} is not a valid UID", sop_class, sop_instance
            )
    return tuple(nonconformant)


def _read(
    dataset: Dataset, keyword: str, defects: list[str], encodings: list[str] | None = None
) -> str | list[str] | None:
    """The attribute as text (a list for several values); None when absent, empty or undecodable.

    With ``encodings`` (the dataset's character sets) a raw value is decoded directly, without
    pydicom building and storing a DataElement for it: a third of the reading time saved.
    """
    tag = _TAG_OF[keyword]
    if tag not in dataset:
        return None
    try:
        element = dataset.get_item(tag)
        if encodings is not None and isinstance(element, RawDataElement):
            # VR UN (explicit VR files after GDCM or anonymiser passes): the dictionary says what it is
            vr = element.VR if element.VR not in (None, "UN") else dictionary_VR(tag)
            return plain_text(convert_value(vr, element, encodings))
        return plain_text(dataset[tag].value)
    except Exception:  # a defective value (bad VR, odd length, undecodable text): leave it out
        defects.append(keyword)
        return None


def _items(dataset: Dataset, keyword: str, defects: list[str]) -> list[Dataset]:
    tag = _TAG_OF[keyword]
    if tag not in dataset:
        return []
    try:
        sequence = dataset[tag].value
        return list(sequence) if sequence else []
    except Exception:
        defects.append(keyword)
        return []


def _codes(dataset: Dataset, keyword: str, defects: list[str]) -> list[dict[str, str]]:
    codes = []
    for item in _items(dataset, keyword, defects):
        code = {part: text for part in _CODE_PARTS if isinstance(text := _read(item, part, defects), str)}
        if code.get("CodeValue") or code.get("CodeMeaning"):
            codes.append(code)
    return codes


def read_many(paths: Iterable[str | os.PathLike[str]]) -> list[DicomInstance | DicomReadError]:
    """Read several files in this process (a unit of work for a worker process of the CLI)."""
    results: list[DicomInstance | DicomReadError] = []
    for path in paths:
        try:
            results.append(read_path(path))
        except DicomReadError as error:
            results.append(error)
        except OSError as error:
            results.append(DicomReadError(PROCESSING_FAILURE, f"cannot read the file: {error.strerror}"))
    return results
