"""Go's view of plain Python values: nil/missing sentinels, type names, truth and ``%v`` printing.

Dicts are Go maps, lists and tuples slices, ``None`` is nil; other objects are
structs (dataclasses print their fields).  ``fmt_v`` and ``sprint`` follow Go's
fmt package, ``go_quote`` strconv.Quote.
"""

from __future__ import annotations

import math
from typing import Any


class TemplateError(ValueError):
    """A template that fails to parse or execute; the message is Go's."""


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


class _NoFinal:
    """Marks "no value piped in from a previous command" (Go's missingVal)."""

    __slots__ = ()


MISSING: Any = _Missing()
NOFINAL: Any = _NoFinal()


def go_type(v: Any) -> str:
    """The Go type name Docker users would see for a value in error messages."""
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def float_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of abs(f) and the decimal point position (strconv's d, dp)."""
    mantissa, _, exponent = repr(abs(f)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    point = len(int_part) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def positional(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def scientific(digits: str, point: int, min_exp_digits: int) -> str:
    exp = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mantissa}e{sign}{abs(exp):0{min_exp_digits}d}"


def non_finite(f: float) -> str | None:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return None


def go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which is what %v prints for float64."""
    special = non_finite(f)
    if special is not None:
        return special
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, point = float_digits(f)
    # Shortest %g switches to exponent form at exponent < -4 or >= 6 (not 21!).
    if point - 1 < -4 or point - 1 >= 6:
        return sign + scientific(digits, point, 2)
    return sign + positional(digits, point)


def sorted_items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """Map entries in Go's fmt/range order (sorted keys)."""
    try:
        return sorted(d.items(), key=lambda kv: kv[0])
    except TypeError:
        return sorted(d.items(), key=lambda kv: (type(kv[0]).__name__, str(kv[0])))


def dataclass_values(v: Any) -> list[tuple[str, Any]] | None:
    if not hasattr(type(v), "__dataclass_fields__"):
        return None
    import dataclasses

    return [(f.name, getattr(v, f.name)) for f in dataclasses.fields(v)]


def fmt_v(v: Any) -> str:
    """Go's %v / fmt.Sprint of a single value."""
    if isinstance(v, str):
        return str.__str__(v)  # the raw string, also for str-based enums
    if v is None:
        return "<nil>"
    if v is MISSING:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (list, tuple, bytes)):
        return "[" + " ".join(fmt_v(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{fmt_v(k)}:{fmt_v(x)}" for k, x in sorted_items(v)) + "]"
    fields = dataclass_values(v)
    if fields is not None:
        return "{" + " ".join(fmt_v(x) for _, x in fields) + "}"
    return str(v)


_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(s: str, quote: str = '"') -> str:
    """strconv.Quote (or QuoteRune with quote="'")."""
    out = [quote]
    for ch in s:
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: spaces only between operands when neither is a string."""
    out: list[str] = []
    prev_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i and not is_string and not prev_string:
            out.append(" ")
        out.append(fmt_v(arg))
        prev_string = is_string
    return "".join(out)


def truth(v: Any) -> bool:
    """Go's template truth: false, 0, nil and empty containers are false; structs are true."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict, bytes)):
        return bool(v)
    return True
