"""The Go parsers docker's inputs go through, with Go's error messages: time.ParseDuration (duration
flags such as --health-interval, filters' until=/since=, Dockerfile flags such as HEALTHCHECK
--interval) and go-units' RAMInBytes (--memory, --shm-size, tmpfs size=, --keep-storage, RUN --mount
size=) and FromHumanSize (--log-opt max-size=)."""

from __future__ import annotations

import re

_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µs, micro sign
    "\u03bcs": 1_000,  # μs, Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_SIZE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?")
_SIZE_UNITS = "kmgtp"
_MAX_NS = (1 << 63) - 1


def go_quote(s: str) -> str:
    """Go's %q for the plain strings that show up in these messages."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_go_duration(value: str) -> int:
    """The duration in nanoseconds; ValueError with Go's message if it is not one."""
    invalid = ValueError(f"time: invalid duration {go_quote(value)}")
    s = value
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total_ns = 0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        assert m is not None  # every group may be empty
        whole, frac, unit = m.groups()
        if not whole and not frac:
            raise invalid  # no digits, e.g. ".s" or a leading unit
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(value)}")
        if unit not in _NANOS_PER_UNIT:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(value)}")
        scale = _NANOS_PER_UNIT[unit]
        total_ns += int(whole or "0") * scale
        if frac:
            total_ns += int(int(frac) * (scale / 10 ** len(frac)))
        if total_ns > _MAX_NS:
            raise invalid
        pos = m.end()
    return -total_ns if negative else total_ns


def _size(value: str, base: int) -> int:
    m = _SIZE.fullmatch(value)
    if m is None:
        raise ValueError(f"invalid size: '{value}'")
    try:
        number = float(m.group(1))  # "1.2.3" matches the pattern, as in go-units, and fails here
    except ValueError:
        raise ValueError(f"invalid size: '{value}'") from None
    unit = (m.group(2) or "").lower()
    return int(number * base ** (_SIZE_UNITS.index(unit) + 1 if unit else 0))


def ram_in_bytes(value: str) -> int:
    """go-units RAMInBytes: binary multiples, `64m`, `1.5g`, `512KiB`, `100`."""
    return _size(value, 1024)


def from_human_size(value: str) -> int:
    """go-units FromHumanSize: decimal multiples, `10m` = 10,000,000, `10MB`, `1.5g`, `100`."""
    return _size(value, 1000)
