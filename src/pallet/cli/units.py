"""Human-readable sizes and durations exactly as docker prints them (go-units)."""

from __future__ import annotations

import time
from datetime import datetime

_DECIMAL = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `precision` significant digits."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000
        i += 1
    return f"{_go_g(size, precision)}{_DECIMAL[i]}"


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, as `docker system df` and `stats` print them."""
    i = 0
    while size >= 1024 and i < len(_BINARY) - 1:
        size /= 1024
        i += 1
    return f"{_go_g(size, 4)}{_BINARY[i]}"


def _go_g(value: float, precision: int) -> str:
    # Go's %.*g: no trailing zeros, no exponent for the magnitudes met here.
    s = f"{value:.{precision}g}"
    if "e" in s:
        s = f"{value:.0f}"
    return s


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(seconds / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def parse_time(rfc3339: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (nanoseconds are cut to micro)."""
    s = rfc3339.strip().replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        frac = ""
        while rest and rest[0].isdigit():
            frac += rest[0]
            rest = rest[1:]
        s = f"{head}.{frac[:6].ljust(6, '0')}{rest}"
    return datetime.fromisoformat(s).timestamp()


def ago(rfc3339: str) -> str:
    try:
        return human_duration(time.time() - parse_time(rfc3339)) + " ago"
    except ValueError:
        return "N/A"
