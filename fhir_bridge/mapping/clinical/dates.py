"""Dates of hospital exports into FHIR date, dateTime and instant, with the formats a mapping names.

A format is a ``strptime`` pattern or one of two names: ``iso`` (FHIR / ISO 8601: ``2024``,
``2024-03``, ``2024-03-05``, ``2024-03-05T14:30:00+01:00``) and ``hl7`` (HL7 v2 DTM:
``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``). The precision written is kept: a month stays a month.
A date-time without an offset is placed in the mapping's time zone; without one, only its date is
kept (as the DICOM path does), because guessing a zone would shift times by hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

DATE_TYPES = ("date", "dateTime", "instant")
_ISO = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)
_HL7 = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
_DAY_DIRECTIVES = ("%d", "%j", "%x", "%c")
_MONTH_DIRECTIVES = ("%m", "%b", "%B")
_TIME_DIRECTIVES = ("%H", "%I", "%X", "%c", "%M")


class DateProblem(ValueError):
    """A value that none of the formats reads, or that cannot be the FHIR type asked for."""


@dataclass(frozen=True)
class Moment:
    """A parsed value: its fields down to the precision written, and its offset when it had one."""

    moment: datetime
    precision: str  # year, month, day, minute, second
    aware: bool


def check_format(pattern: str) -> str | None:
    """Why a format cannot be used, or None: it must name a year, and round-trip a sample date."""
    if pattern in ("iso", "hl7"):
        return None
    if "%Y" not in pattern and "%y" not in pattern and "%c" not in pattern:
        return f"the date format {pattern!r} has no year (%Y)"
    try:
        sample = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
        datetime.strptime(sample.strftime(pattern), pattern)
    except ValueError as error:
        return f"the date format {pattern!r} is not usable: {error}"
    return None


def _precision(pattern: str) -> str:
    if any(d in pattern for d in ("%S", "%X", "%c", "%T")):
        return "second"
    if any(d in pattern for d in _TIME_DIRECTIVES):
        return "minute"
    if any(d in pattern for d in _DAY_DIRECTIVES):
        return "day"
    if any(d in pattern for d in _MONTH_DIRECTIVES):
        return "month"
    return "year"


def _offset(text: str | None) -> tzinfo | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 14 or minutes > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _from_groups(groups: tuple[str | None, ...], offset: str | None) -> Moment:
    year, month, day, hour, minute, second, fraction = groups
    precision = "year"
    for name, part in (("month", month), ("day", day), ("minute", minute), ("second", second)):
        if part is None:
            break
        precision = name
    if hour is not None and minute is None:  # HL7 allows an hour alone
        precision, minute = "minute", "00"
    micros = int(((fraction or ".0")[1:] + "000000")[:6])
    zone = _offset(offset)
    moment = datetime(
        int(year),  # type: ignore[arg-type]
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micros,
        tzinfo=zone,
    )
    return Moment(moment, precision, zone is not None)


def parse_moment(text: str, formats: tuple[str, ...]) -> Moment:
    for pattern in formats:
        try:
            if pattern == "iso":
                match = _ISO.match(text)
                if match:
                    return _from_groups(match.groups()[:7], match.group(8))
            elif pattern == "hl7":
                match = _HL7.match(text)
                if match:
                    return _from_groups(match.groups()[:7], match.group(8))
            else:
                parsed = datetime.strptime(text, pattern)
                return Moment(parsed, _precision(pattern), parsed.tzinfo is not None)
        except ValueError:
            continue
    names = ", ".join(formats)
    raise DateProblem(f"is not a date in the format{'s' if len(formats) > 1 else ''} {names}")


def to_fhir(text: str, kind: str, formats: tuple[str, ...], zone: ZoneInfo | None) -> str:
    """``text`` as a FHIR ``date``, ``dateTime`` or ``instant``."""
    parsed = parse_moment(text, formats)
    moment, precision = parsed.moment, parsed.precision
    has_time = precision in ("minute", "second")
    if kind == "date" or not has_time:
        if kind == "instant":
            raise DateProblem("is not an instant: it has no time of day")
        return _date(moment, precision)
    if not parsed.aware:
        if zone is None:
            if kind == "instant":
                raise DateProblem("is not an instant: it has no time zone, and the mapping sets none")
            return _date(moment, "day")
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")


def _date(moment: datetime, precision: str) -> str:
    if precision == "year":
        return f"{moment.year:04d}"
    if precision == "month":
        return f"{moment.year:04d}-{moment.month:02d}"
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
