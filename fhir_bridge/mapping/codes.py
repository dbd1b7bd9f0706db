"""Code tables and value conversions shared by the DICOM mapping: DICOM values in, FHIR datatypes out."""

from __future__ import annotations

import csv
import re
import uuid
from datetime import date, datetime
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
RFC_3986 = "urn:ietf:rfc:3986"
# DICOM Coding Scheme Designators with a FHIR system URI (FHIR R4 "DICOM mapping" and the HL7 terminology).
CODING_SCHEMES = {
    "SCT": SNOMED,
    "DCM": DCM,
    "LN": "http://loinc.org",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "RADLEX": "http://radlex.org",
}
# A fixed namespace for the ids fhir-bridge derives (uuid5): the same input gives the same id everywhere.
ID_NAMESPACE = uuid.UUID("5d1c7a2e-3f0b-5c8e-9a4d-6b2f1e0c7d93")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OFFSET = re.compile(r"^([+-])(\d{2})(\d{2})$")
_CODE = re.compile(r"^[^\s]+( [^\s]+)*$")  # FHIR code: no leading, trailing or double whitespace


def resource_id(kind: str, *parts: str) -> str:
    """A deterministic FHIR id: concurrent writers of the same thing converge on one resource."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x00".join((kind, *parts))))


def _table(name: str) -> dict[str, tuple[str, str]]:
    text = files("fhir_bridge.mapping").joinpath(f"data/{name}").read_text(encoding="utf-8")
    rows = csv.reader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t")
    next(rows)
    return {row[0]: (row[1], row[2]) for row in rows if row}


@cache
def body_parts() -> dict[str, tuple[str, str]]:
    return _table("body_parts.tsv")


@cache
def lateralities() -> dict[str, tuple[str, str]]:
    return _table("laterality.tsv")


def text(value: Any) -> str | None:
    """A FHIR string: control characters removed, surrounding space trimmed, never empty."""
    if isinstance(value, list):
        value = "\\".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub("", value).strip()
    return cleaned or None


def first(value: Any) -> str | None:
    """The first value of a possibly multi-valued attribute."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return text(value)


def unsigned(value: Any) -> int | None:
    """An IS value as a FHIR unsignedInt; None for negative, fractional or garbled values."""
    candidate = first(value)
    try:
        number = int(candidate) if candidate is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 <= number <= 2_147_483_647 else None


def body_site(term: Any, anatomic_regions: Any) -> dict[str, str] | None:
    """SNOMED CT Coding from an SCT-coded Anatomic Region Sequence, else Body Part Examined via the CID 4 table."""
    for code in anatomic_regions or []:
        designator, value = designated(code)
        if designator == "SCT" and value:
            coding = {"system": SNOMED, "code": value}
            if meaning := text(code.get("CodeMeaning")):
                coding["display"] = meaning
            return coding
    key = re.sub(r"[\s_\-]", "", first(term) or "").upper()
    found = body_parts().get(key)
    return {"system": SNOMED, "code": found[0], "display": found[1]} if found else None


def laterality(*values: Any) -> dict[str, str] | None:
    for value in values:
        found = lateralities().get((first(value) or "").upper())
        if found:
            return {"system": SNOMED, "code": found[0], "display": found[1]}
    return None


def modality(value: Any) -> dict[str, str]:
    """A DCM modality Coding; 'OT' (Other) when the instance names none (Modality is required in FHIR)."""
    code = (first(value) or "OT").upper()
    return {"system": DCM, "code": code}


def sct_from_srt(value: str) -> str | None:
    """The SNOMED CT concept id of a legacy SNOMED RT id (``SRT`` codes such as ``T-62000``, Liver), from the
    DICOM standard's SNOMED mapping as pydicom ships it; None when it has none."""
    return _srt_to_sct().get(value)


@cache
def _srt_to_sct() -> dict[str, str]:
    """Loaded on first use: the table is 8,000 entries, a second of start-up on a busy machine."""
    from pydicom.sr._snomed_dict import mapping

    return mapping["SRT"]


def designated(code: dict[str, Any]) -> tuple[str, str | None]:
    """(designator, value) with legacy SNOMED RT codes given as the SNOMED CT concept they stand for."""
    designator, value = (code.get("CodingSchemeDesignator") or "").upper(), text(code.get("CodeValue"))
    if designator == "SRT" and value and (sct := sct_from_srt(value)):
        return "SCT", sct
    return designator, value


def concept(codes: Any, free_text: Any = None) -> dict[str, Any] | None:
    """A CodeableConcept from DICOM code items; schemes without a known FHIR system keep their meaning as text."""
    codings, meanings = [], []
    for code in codes or []:
        designator, value = designated(code)
        meaning = text(code.get("CodeMeaning"))
        system = CODING_SCHEMES.get(designator)
        if system and value and _CODE.match(value):
            coding = {"system": system, "code": value}
            if meaning:
                coding["display"] = meaning
            codings.append(coding)
        elif meaning:
            meanings.append(meaning)
    result: dict[str, Any] = {}
    if codings:
        result["coding"] = codings
    label = text(free_text) or ("; ".join(meanings) if meanings else None)
    if label:
        result["text"] = label
    return result or None


def fhir_date(value: Any) -> str | None:
    """A FHIR date from DICOM DA (``YYYYMMDD``, legacy ``YYYY.MM.DD``) or an already reduced ``YYYY[-MM]``."""
    return _date(first(value) or "")


@lru_cache(maxsize=4096)
def _date(value: str) -> str | None:
    candidate = value.replace(".", "").replace("-", "")
    if not candidate.isdigit() or len(candidate) not in (4, 6, 8):
        return None
    year = int(candidate[:4])
    if len(candidate) == 4:
        return candidate if year >= 1 else None
    if not 1 <= int(candidate[4:6]) <= 12:
        return None
    if len(candidate) == 6:
        return f"{candidate[:4]}-{candidate[4:6]}"
    try:
        return date(year, int(candidate[4:6]), int(candidate[6:8])).isoformat()
    except ValueError:
        return None


def fhir_datetime(day: Any, time: Any, offset: Any, zone: ZoneInfo | None) -> str | None:
    """A FHIR dateTime from DICOM DA + TM + Timezone Offset From UTC.

    FHIR requires a zone with a time: the instance's offset, else the configured zone; without
    either the date alone is kept rather than a time of unknown zone.
    """
    return _datetime(first(day) or "", first(time) or "", first(offset) or "", zone)


@lru_cache(maxsize=4096)
def _datetime(day: str, time: str, offset: str, zone: ZoneInfo | None) -> str | None:
    iso_date = _date(day)
    if iso_date is None or len(iso_date) != 10:
        return iso_date
    clock = _time(time)
    if clock is None:
        return iso_date
    hours, minutes, seconds, fraction = clock
    suffix = _offset(offset)
    if suffix is None and zone is not None:
        moment = datetime.combine(date.fromisoformat(iso_date), datetime.min.time()).replace(
            hour=hours, minute=minutes, second=min(seconds, 59), tzinfo=zone
        )
        suffix = moment.strftime("%z")
        suffix = f"{suffix[:3]}:{suffix[3:]}"
    if suffix is None:
        return iso_date
    return f"{iso_date}T{hours:02d}:{minutes:02d}:{seconds:02d}{fraction}{suffix}"


def fhir_datetime_of(value: Any, zone: ZoneInfo | None) -> str | None:
    """A FHIR dateTime from a DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any precision from the year)."""
    candidate = first(value) or ""
    match = re.fullmatch(r"(\d{4,8})(\d{2,6}(?:\.\d{1,6})?)?([+-]\d{4})?", candidate)
    if not match:
        return None
    return _datetime(match.group(1), match.group(2) or "", match.group(3) or "", zone)


def _time(value: str | None) -> tuple[int, int, int, str] | None:
    if not value:
        return None
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?", value.replace(":", ""))
    if not match:
        return None
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups()[:3])
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    return hours, minutes, seconds, match.group(4) or ""


def _offset(value: str | None) -> str | None:
    match = _OFFSET.match(value or "")
    if not match or int(match.group(2)) > 14 or int(match.group(3)) > 59:
        return None
    return f"{match.group(1)}{match.group(2)}:{match.group(3)}"
