"""fmt.Sprintf for the common verbs, with Go's ``%!verb(...)`` error notation."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from pallet.cli.gotemplate.values import (
    MISSING,
    fmt_v,
    go_float,
    go_quote,
    go_type,
    non_finite,
    sorted_items,
)


class _Spec(NamedTuple):
    flags: str
    width: int | None
    prec: int | None


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    if spec.width is None or len(s) >= spec.width:
        return s
    fill = spec.width - len(s)
    if "-" in spec.flags:
        return s + " " * fill
    if "0" in spec.flags and not (numeric and spec.prec is not None):
        sign = s[0] if numeric and s[:1] in ("+", "-", " ") else ""
        return sign + "0" * fill + s[len(sign) :]
    return " " * fill + s


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(arg)}={fmt_v(arg)})"


def _sign(negative: bool, spec: _Spec) -> str:
    if negative:
        return "-"
    return "+" if "+" in spec.flags else (" " if " " in spec.flags else "")


_INT_BASES = {"d": (10, ""), "v": (10, ""), "b": (2, "0b"), "o": (8, "0"), "O": (8, "0o"), "x": (16, "0x")}


def _format_int(verb: str, n: int, spec: _Spec) -> str:
    if verb == "c":
        return _pad(chr(n), spec)
    if verb == "q":
        return _pad(go_quote(chr(n), "'"), spec)
    if verb == "U":
        return _pad(f"U+{n:04X}", spec)
    base, prefix = _INT_BASES.get(verb.lower() if verb == "X" else verb, (0, ""))
    if base == 0:
        return _bad_verb(verb, n)
    digits = {10: "{:d}", 2: "{:b}", 8: "{:o}", 16: "{:x}"}[base].format(abs(n))
    if verb == "X":
        digits, prefix = digits.upper(), "0X"
    if spec.prec is not None:
        digits = digits.zfill(spec.prec)
    if verb != "O" and "#" not in spec.flags:
        prefix = ""
    return _pad(_sign(n < 0, spec) + prefix + digits, spec, numeric=True)


def _format_float(verb: str, f: float, spec: _Spec) -> str:
    if verb not in "vgGeEfF":
        return _bad_verb(verb, f)
    special = non_finite(f)
    if special is not None:  # Go prints +Inf/-Inf/NaN for every float verb, never zero-padded
        return _pad(special, spec._replace(flags=spec.flags.replace("0", "")))
    if verb in "vgG" and spec.prec is None:
        body = go_float(abs(f))
        body = body.upper() if verb == "G" else body
    else:
        prec = 6 if spec.prec is None else spec.prec
        py_verb = "g" if verb == "v" else verb
        body = format(abs(f), f".{prec}{py_verb}")
    return _pad(_sign(math.copysign(1.0, f) < 0, spec) + body, spec, numeric=True)


def _format_str(verb: str, s: str, spec: _Spec) -> str:
    if verb in "vs":
        return _pad(s if spec.prec is None else s[: spec.prec], spec)
    if verb == "q":
        return _pad(go_quote(s), spec)
    if verb in "xX":
        encoded = s.encode("utf-8", "surrogatepass").hex()
        return _pad(encoded.upper() if verb == "X" else encoded, spec)
    return _bad_verb(verb, s)


def _format_arg(verb: str, arg: Any, spec: _Spec) -> str:
    """One %verb conversion; containers apply the verb element-wise like Go."""
    if arg is None or arg is MISSING:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(verb, None)
    if isinstance(arg, bool):
        return _pad("true" if arg else "false", spec) if verb in "vt" else _bad_verb(verb, arg)
    if isinstance(arg, int):
        return _format_int(verb, int(arg), spec)
    if isinstance(arg, float):
        return _format_float(verb, arg, spec)
    if isinstance(arg, str):
        return _format_str(verb, str(arg), spec)
    if isinstance(arg, (list, tuple)):
        return "[" + " ".join(_format_arg(verb, x, spec) for x in arg) + "]"
    if isinstance(arg, dict):
        items = sorted_items(arg)
        return (
            "map["
            + " ".join(f"{_format_arg(verb, k, spec)}:{_format_arg(verb, v, spec)}" for k, v in items)
            + "]"
        )
    if verb in "vs":
        return _pad(fmt_v(arg), spec)
    return _bad_verb(verb, arg)


_SPEC_RE = re.compile(r"%([-+# 0]*)([0-9]+|\*)?(?:(\.)([0-9]+|\*)?)?(.?)", re.S)


def _star(value: str | None, args: list[Any], argi: int) -> tuple[int | None, int]:
    if value != "*":
        return (int(value) if value else None), argi
    if argi < len(args) and isinstance(args[argi], int):
        return int(args[argi]), argi + 1
    return None, argi + 1


def sprintf(fmt: str, args: list[Any]) -> str:
    """fmt.Sprintf for the common verbs, with Go's %!verb(...) error notation."""
    out: list[str] = []
    argi = 0
    pos = 0
    while True:
        pct = fmt.find("%", pos)
        if pct < 0:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:pct])
        m = _SPEC_RE.match(fmt, pct)
        assert m is not None  # the pattern matches any "%..." prefix
        flags, width_s, dot, prec_s, verb = m.groups()
        pos = m.end()
        if not verb:
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        width, argi = _star(width_s, args, argi)
        prec: int | None = None
        if dot:
            prec, argi = _star(prec_s or "0", args, argi)
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_arg(verb, args[argi], _Spec(flags, width, prec)))
        argi += 1
    if argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={fmt_v(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
