"""``--filter key=value`` handling as the Docker CLI and daemon do it.

Covers the CLI's FilterOpt parsing, the daemon's validation and label/boolean
matching (api/types/filters), and the ``until``/``since`` time values of
api/types/time.GetTimestamp (durations, RFC 3339 variants, dates and Unix
timestamps).  Error messages are Docker's.  Standard library only.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Iterable, Mapping

from pallet.gounits import go_quote, parse_go_duration

__all__ = [
    "FilterError",
    "get_bool",
    "match_bool",
    "match_label",
    "match_labels",
    "parse_duration",
    "parse_filters",
    "parse_timestamp",
]


class FilterError(ValueError):
    """An invalid filter flag or value; the message is Docker's."""


def parse_filters(values: Iterable[str], allowed: Collection[str]) -> dict[str, list[str]]:
    """Parse repeated ``--filter name=value`` flags into ``{name: [values...]}``.

    As in Docker, names are trimmed and lower-cased, values trimmed, duplicate
    values collapse, empty flags are ignored, and any name outside ``allowed``
    is rejected.
    """
    filters: dict[str, list[str]] = {}
    for raw in values:
        if raw == "":
            continue
        name, sep, value = raw.partition("=")
        if not sep:
            raise FilterError(
                f'invalid argument "{raw}" for "-f, --filter" flag: '
                "bad format of filter (expected name=value)"
            )
        bucket = filters.setdefault(name.strip().lower(), [])
        value = value.strip()
        if value not in bucket:
            bucket.append(value)
    for name in filters:
        if name not in allowed:
            raise FilterError(f"invalid filter '{name}'")
    return filters


def match_label(labels: Mapping[str, str], expr: str) -> bool:
    """Match one label expression: ``key``, ``key=value`` or ``key!=value``.

    ``key!=value`` holds when the label is absent or has another value.
    """
    key, sep, want = expr.partition("=")
    negate = bool(sep) and key.endswith("!")
    if negate:
        key = key[:-1]
    if key not in labels:
        return negate
    if not sep:
        return True
    return (labels[key] == want) != negate


def match_labels(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    """Docker's label filtering: every ``label`` value matches and no ``label!`` value does."""
    if not all(match_label(labels, expr) for expr in filters.get("label", [])):
        return False
    return not any(match_label(labels, expr) for expr in filters.get("label!", []))


def match_bool(value: str, name: str = "") -> bool:
    """A boolean filter value (``true``/``1``/``false``/``0``)."""
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    if name:
        raise FilterError(f"invalid filter '{name}=[{value}]'")
    raise FilterError(f"invalid filter '{value}': expected true, false, 1 or 0")


def get_bool(filters: Mapping[str, list[str]], key: str, default: bool) -> bool:
    """Args.GetBoolOrDefault: ``default`` when absent; error on empty or conflicting values."""
    values = filters.get(key)
    if values is None:
        return default
    if not values:
        raise FilterError(f"invalid filter '{key}'")
    is_true = "1" in values or "true" in values
    is_false = "0" in values or "false" in values
    if is_true == is_false:
        raise FilterError(f"invalid filter '{key}=[{' '.join(values)}]'")
    return is_true


# =============================================================================
# Go durations (time.ParseDuration)
# =============================================================================

def parse_duration(value: str) -> float:
    """time.ParseDuration, in seconds: ``300ms``, ``-1.5h``, ``2h45m``; units ns us µs ms s m h."""
    try:
        return parse_go_duration(value) / 1e9
    except ValueError as e:
        raise FilterError(str(e)) from None


# =============================================================================
# Go time layouts, just enough for GetTimestamp's formats
# =============================================================================

_RFC3339 = "2006-01-02T15:04:05Z07:00"
_RFC3339_NANO = "2006-01-02T15:04:05.999999999Z07:00"
_RFC3339_LOCAL = "2006-01-02T15:04:05"
_RFC3339_NANO_LOCAL = "2006-01-02T15:04:05.999999999"
_DATE_WITH_ZONE = "2006-01-02Z07:00"
_DATE_LOCAL = "2006-01-02"
_LAYOUT_ELEMENTS = (".999999999", "Z07:00", "2006", "01", "02", "15", "04", "05")


class _TimeParseError(Exception):
    pass


def _layout_chunks(layout: str) -> list[str]:
    """Split a layout into its std elements and literal characters."""
    chunks: list[str] = []
    i = 0
    while i < len(layout):
        element = next((e for e in _LAYOUT_ELEMENTS if layout.startswith(e, i)), layout[i])
        chunks.append(element)
        i += len(element)
    return chunks


def _is_digit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


def _getnum(value: str, fixed: bool) -> tuple[int, str] | None:
    """Go's getnum: one or two digits (exactly two when ``fixed``)."""
    if not _is_digit(value, 0):
        return None
    if not _is_digit(value, 1):
        return None if fixed else (int(value[0]), value[1:])
    return int(value[:2]), value[2:]


def _fraction(value: str) -> tuple[int | None, str]:
    """A ".ddd" (or ",ddd") fraction as nanoseconds, extra digits truncated; None if absent."""
    if len(value) < 2 or value[0] not in ".," or not _is_digit(value, 1):
        return None, value
    n = 1
    while _is_digit(value, n):
        n += 1
    digits = value[1:n][:9]
    return int(digits.ljust(9, "0")), value[n:]


def _take_fraction(value: str, fields: dict[str, int]) -> str:
    nanos, rest = _fraction(value)
    if nanos is not None:
        fields["nsec"] = nanos
    return rest


def _zone(value: str) -> tuple[int, str, str | None] | None:
    """``Z`` or ``±hh:mm``: (offset seconds, rest, range error)."""
    if value[:1] == "Z":
        return 0, value[1:], None
    if len(value) < 6 or value[3] != ":" or value[0] not in "+-":
        return None
    hours, minutes = value[1:3], value[4:6]
    if not (hours.isdigit() and minutes.isdigit() and hours.isascii() and minutes.isascii()):
        return None
    error = "time zone offset hour" if int(hours) > 24 else None
    error = "time zone offset minute" if int(minutes) > 60 else error
    offset = (int(hours) * 60 + int(minutes)) * 60
    return (-offset if value[0] == "-" else offset), value[6:], error


_RANGES = {"01": ("month", 1, 12), "15": ("hour", 0, 23), "04": ("minute", 0, 59), "05": ("second", 0, 59)}


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _parse_element(element: str, value: str, fields: dict[str, int]) -> tuple[str, str | None]:
    """Consume one layout element from ``value``; returns (rest, range error) or raises."""
    if element == "2006":
        if len(value) < 4 or not value[:4].isdigit() or not value[:4].isascii():
            raise _TimeParseError
        fields["year"] = int(value[:4])
        return value[4:], None
    if element in ("01", "02", "15", "04", "05"):
        got = _getnum(value, fixed=element != "15")
        if got is None:
            raise _TimeParseError
        number, rest = got
        fields[element] = number
        name, low, high = _RANGES.get(element, ("day", 0, 31))
        error = name if not low <= number <= high else None
        if element == "05" and error is None:
            rest = _take_fraction(rest, fields)  # Go accepts a fraction even when the layout has none
        return rest, error
    if element == ".999999999":
        return _take_fraction(value, fields), None
    if element == "Z07:00":
        zone = _zone(value)
        if zone is None:
            raise _TimeParseError
        fields["offset"], rest, error = zone
        return rest, error
    if not value.startswith(element):
        raise _TimeParseError
    return value[len(element) :], None


def _go_time_parse(layout: str, value: str, local_offset: int) -> tuple[int, int]:
    """time.Parse / ParseInLocation for GetTimestamp's layouts: (unix seconds, nanoseconds)."""
    fields: dict[str, int] = {"year": 1, "01": 1, "02": 1, "15": 0, "04": 0, "05": 0, "nsec": 0}
    rest = value
    for element in _layout_chunks(layout):
        try:
            rest, error = _parse_element(element, rest, fields)
        except _TimeParseError:
            raise FilterError(
                f"parsing time {go_quote(value)} as {go_quote(layout)}: "
                f"cannot parse {go_quote(rest)} as {go_quote(element)}"
            ) from None
        if error:
            raise FilterError(f"parsing time {go_quote(value)}: {error} out of range")
    if rest:
        raise FilterError(f"parsing time {go_quote(value)}: extra text: {go_quote(rest)}")
    year, month, day = fields["year"], fields["01"], fields["02"]
    if not 1 <= day <= _days_in_month(year, month):
        raise FilterError(f"parsing time {go_quote(value)}: day out of range")
    seconds = _days_from_civil(year, month, day) * 86400 + fields["15"] * 3600 + fields["04"] * 60
    seconds += fields["05"] - fields.get("offset", local_offset)
    return seconds, fields["nsec"]


def _choose_layout(value: str) -> tuple[str, bool]:
    """GetTimestamp's layout choice; the flag says whether to parse in the local zone."""
    in_location = not any(c in value for c in "zZ+") and value.count("-") != 3
    if "." in value:
        return (_RFC3339_NANO_LOCAL if in_location else _RFC3339_NANO), in_location
    if "T" in value:
        colons = value.count(":")
        # A "+hh:mm"/"-hh:mm" offset brings its own colon.
        if not in_location and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1
        local = ("2006-01-02T15", "2006-01-02T15:04", _RFC3339_LOCAL)
        zoned = ("2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", _RFC3339)
        return (local if in_location else zoned)[min(colons, 2)], in_location
    return (_DATE_LOCAL if in_location else _DATE_WITH_ZONE), in_location


_UNIX_PART_RE = re.compile(r"[+-]?[0-9]+")


def _parse_unix(value: str) -> float:
    """api/types/time.parseTimestamp: ``seconds[.fraction]``."""
    seconds, sep, fraction = value.partition(".")
    if not _UNIX_PART_RE.fullmatch(seconds) or (sep and not _UNIX_PART_RE.fullmatch(fraction)):
        raise FilterError(f"failed to parse value as time or duration: {go_quote(value)}")
    nanos = int(float(int(fraction)) * math.pow(10, 9 - len(fraction))) if sep else 0
    return int(seconds) + nanos / 1e9


def parse_timestamp(value: str, now: float) -> float:
    """Docker's ``until``/``since`` value as Unix seconds (GetTimestamp + ParseTimestamps).

    Accepts Go durations relative to ``now`` (``10m``, ``1h30m``: now minus the
    duration, truncated to whole seconds), RFC 3339 / RFC 3339 Nano with or
    without a zone (no zone: the local zone at ``now``), ``2006-01-02`` dates
    and Unix timestamps with an optional fraction.
    """
    if value != "0":
        try:
            return float(math.floor(now - parse_duration(value)))
        except FilterError:
            pass
    layout, in_location = _choose_layout(value)
    local_offset = time.localtime(now).tm_gmtoff if in_location else 0
    try:
        seconds, nanos = _go_time_parse(layout, value, local_offset)
    except FilterError:
        if "-" in value:
            raise  # an RFC 3339-like value that failed: report the parse error
        return _parse_unix(value)
    return seconds + nanos / 1e9
