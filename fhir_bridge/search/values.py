"""Value semantics shared by indexing and querying: string normalisation, date and number ranges.

Index rows and query values go through the same functions, so that what is written and what is
asked for always compare the same way.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_INSTANT = -62135596800000000  # 0001-01-01T00:00:00Z in microseconds since the epoch
MAX_INSTANT = 253402300799999999  # 9999-12-31T23:59:59.999999Z
MAX_INDEXED_STRING = 255  # characters of a string kept in an index row
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")  # of number, date and quantity values

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search (the spec's default matching)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def indexed_text(text: str) -> str:
    """``text`` as string and token:text search compare it: normalised, cut to the indexed length."""
    return normalize_string(text)[:MAX_INDEXED_STRING]


class Prefix(enum.Enum):
    """A searched number's, date's or quantity's prefix: structure of its plan (``search.shapes``),
    as it decides the SQL."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


def split_prefix(value: str) -> tuple[str, str]:
    """(prefix, rest) of a number, date or quantity search value; ``eq`` when it has none.

    A prefix is only one when a number or date follows it, so that a value such as ``ge`` alone is
    taken as it is (and refused as no date) rather than as a prefix with nothing after it.
    """
    if value[:2] in PREFIXES and len(value) > 2 and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def _micros(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def date_range(text: str) -> tuple[int, int] | None:
    """The instants (microseconds since the epoch, inclusive) that a FHIR date covers.

    A partial date covers its whole period (2024 is the whole year). A date-time without a time
    zone is taken as UTC: the server's documented local time zone.
    """
    match = _DATE.match(text.strip())
    if not match:
        return None
    parts = match.groupdict()
    try:
        year = int(parts["year"])
        month = int(parts["month"] or 1)
        day = int(parts["day"] or 1)
        hour, minute = int(parts["hour"] or 0), int(parts["minute"] or 0)
        second = int(parts["second"] or 0)
        fraction = parts["fraction"] or ""
        micro = int((fraction + "000000")[:6]) if fraction else 0
        tz = parts["tz"]
        offset = timedelta(0)
        if tz and tz != "Z":
            sign = -1 if tz[0] == "-" else 1
            offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC) - offset
    except ValueError:
        return None
    if parts["month"] is None:
        end = start.replace(year=year + 1) if year < 9999 else None
    elif parts["day"] is None:
        end = start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1)
    elif parts["hour"] is None:
        end = start + timedelta(days=1)
    elif parts["minute"] is None:
        end = start + timedelta(hours=1)
    elif parts["second"] is None:
        end = start + timedelta(minutes=1)
    elif not fraction:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction), 6))))
    low = _micros(start)
    return low, (_micros(end) - 1 if end else MAX_INSTANT)


def number_range(value: object) -> tuple[float, float, float] | None:
    """(value, low, high) for a decimal, the range being its implicit precision (100 ~ [99.5, 100.5))."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(number), float(number - half), float(number + half)
