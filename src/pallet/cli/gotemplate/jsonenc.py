"""Docker's ``json`` template function: encoding/json with SetEscapeHTML(false).

``json`` is imported lazily (only ``json.encoder``, when a string is encoded).
"""

from __future__ import annotations

import math
from typing import Any

from pallet.cli.gotemplate.values import MISSING, dataclass_values, float_digits, positional, scientific


def _json_float(f: float) -> str:
    """encoding/json's float64 encoding (ES6 style: exponent only below 1e-6 or from 1e21)."""
    sign = "-" if f < 0 else ""
    if f == 0:
        return "0" if math.copysign(1.0, f) > 0 else "-0"
    digits, point = float_digits(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        return sign + scientific(digits, point, 1 if point - 1 < 0 else 2)
    return sign + positional(digits, point)


class _JSONUnsupported(Exception):
    pass


def _json_str(s: str) -> str:
    from json.encoder import encode_basestring

    # Go always escapes U+2028/U+2029, even with HTML escaping off.
    return str(encode_basestring(s)).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json_key(k: Any) -> str:
    if isinstance(k, str):
        return _json_str(k)
    if isinstance(k, int) and not isinstance(k, bool):
        return _json_str(str(k))
    raise _JSONUnsupported


def _json_write(v: Any, out: list[str]) -> None:
    if v is None or v is MISSING:
        out.append("null")
    elif isinstance(v, str):
        out.append(_json_str(v))
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, int):
        out.append(str(int(v)))
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise _JSONUnsupported
        out.append(_json_float(v))
    elif isinstance(v, dict):
        _json_write_object(list(v.items()), out)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _json_write(item, out)
        out.append("]")
    else:
        fields = dataclass_values(v)
        if fields is None:
            raise _JSONUnsupported
        _json_write_object(fields, out)


def _json_write_object(items: list[tuple[Any, Any]], out: list[str]) -> None:
    out.append("{")
    for i, (key, value) in enumerate(items):
        if i:
            out.append(",")
        out.append(_json_key(key))
        out.append(":")
        _json_write(value, out)
    out.append("}")


def to_json(v: Any) -> str:
    """Compact JSON; keys keep insertion order; "" on unencodable values (Docker ignores the error)."""
    out: list[str] = []
    try:
        _json_write(v, out)
    except _JSONUnsupported:
        return ""
    return "".join(out)
