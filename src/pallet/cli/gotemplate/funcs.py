"""Template functions: Go's builtins and Docker's additions (json, split, join, title, ...).

``FUNCS`` is the function map for executing rows, ``HEADER_FUNCS`` Docker's
variant for a table's header row.  A function raising ``ArgError`` reports its
message as is; any other exception as "error calling NAME: ...".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pallet.cli.gotemplate.jsonenc import to_json
from pallet.cli.gotemplate.printf import sprintf
from pallet.cli.gotemplate.values import MISSING, fmt_v, go_type, sprint, truth


class _FuncError(Exception):
    """Raised by a template function; reported as "error calling NAME: msg"."""


class ArgError(Exception):
    """An argument of the wrong type; reported as is (Go's reflect checks)."""


def _iface(v: Any) -> Any:
    """An interface{} parameter: Go passes a missing value as nil."""
    return None if v is MISSING else v


def _want_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is MISSING:
        raise ArgError("invalid value; expected string")
    raise ArgError(f"wrong type for value; expected string; got {go_type(v)}")


def _want_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ArgError(f"wrong type for value; expected int; got {go_type(v)}")


def _fn_len(v: Any) -> int:
    v = _iface(v)
    if v is None:
        return 0  # a nil slice/map; dicts cannot say which
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))  # Go's len counts bytes
    if isinstance(v, (list, tuple, dict, bytes)):
        return len(v)
    raise _FuncError(f"len of type {go_type(v)}")


def _zero_of_map(m: dict[Any, Any]) -> Any:
    """The zero value of a map's element type, guessed from its values (map[string]string → "")."""
    return "" if all(isinstance(x, str) for x in m.values()) else None


def _index_one(item: Any, key: Any) -> Any:
    if item is None:
        return ""  # indexing a nil map[string]string
    if isinstance(item, dict):
        return item[key] if key in item else _zero_of_map(item)
    if isinstance(item, (list, tuple, str, bytes)):
        if not isinstance(key, int) or isinstance(key, bool):
            raise _FuncError(f"cannot index slice/array with type {go_type(key)}")
        if not 0 <= key < len(item):
            raise _FuncError(f"index out of range: {key}")
        return ord(item[key]) if isinstance(item, str) else item[key]
    raise _FuncError(f"can't index item of type {go_type(item)}")


def _fn_index(item: Any, *keys: Any) -> Any:
    item = _iface(item)
    for key in keys:
        item = _index_one(item, _iface(key))
    return item


def _fn_slice(item: Any, *idx: Any) -> Any:
    item = _iface(item)
    if not isinstance(item, (str, list, tuple)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if len(idx) > 3 or (len(idx) > 2 and isinstance(item, str)):
        raise _FuncError(f"too many slice indexes: {len(idx)}")
    bounds = [_want_int(_iface(i)) for i in idx]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise _FuncError(f"index out of range: {end if end > len(item) else start}")
    return item[start:end]


_CMP_KINDS = {bool: "bool", int: "int", float: "float", str: "string"}


def _kind(v: Any) -> str:
    if v is None or v is MISSING:
        return "nil"
    for typ, name in _CMP_KINDS.items():
        if isinstance(v, typ) and (typ is not int or not isinstance(v, bool)):
            return name
    return "other"


def _eq_one(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        if "nil" in (ka, kb):
            return False
        raise _FuncError("incompatible types for comparison")
    if ka == "nil":
        return True
    if ka == "other":
        if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
            raise _FuncError(f"non-comparable type {fmt_v(b)}: {go_type(b)}")
        return bool(a is b or a == b)
    return bool(a == b)


def _fn_eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    return any(_eq_one(a, b) for b in others)


def _fn_lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("nil", "other") or kb in ("nil", "other"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    if ka == "bool":
        raise _FuncError("invalid type for comparison")
    return bool(a < b)


def _fn_le(a: Any, b: Any) -> bool:
    return _fn_lt(a, b) or _fn_eq(a, b)


def _go_title(s: str) -> str:
    """strings.Title: upper-case letters that follow a separator; the rest is left alone."""
    out: list[str] = []
    prev = " "
    for ch in s:
        if _is_title_separator(prev):
            titled = ch.title()
            out.append(titled if len(titled) == 1 else ch)
        else:
            out.append(ch)
        prev = ch
    return "".join(out)


def _is_title_separator(ch: str) -> bool:
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


def _fn_split(s: Any, sep: Any) -> list[str]:
    s, sep = _want_str(s), _want_str(sep)
    return list(s) if sep == "" else s.split(sep)


def _fn_join(items: Any, sep: Any) -> str:
    sep = _want_str(sep)
    items = _iface(items)
    if items is None:
        return ""
    if not isinstance(items, (list, tuple)):
        raise ArgError(f"wrong type for value; expected []string; got {go_type(items)}")
    return sep.join(fmt_v(x) for x in items)


def _fn_pad(s: Any, prefix: Any, suffix: Any) -> str:
    s = _want_str(s)
    return s and " " * _want_int(prefix) + s + " " * _want_int(suffix)


def _fn_truncate(s: Any, length: Any) -> str:
    s, length = _want_str(s), _want_int(length)
    return s if len(s) < length else s[:length]


def _eval_args_text(args: tuple[Any, ...]) -> str:
    """text/template's evalArgs: a lone string as is, anything else through fmt.Sprint."""
    if len(args) == 1 and isinstance(args[0], str):
        return str(args[0])
    return sprint([_iface(a) for a in args])


def _fn_html(*args: Any) -> str:
    s = _eval_args_text(args)
    table = {"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "\0": "\ufffd"}
    return "".join(table.get(ch, ch) for ch in s)


def _fn_js(*args: Any) -> str:
    out: list[str] = []
    for ch in _eval_args_text(args):
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=" or ord(ch) < 0x20 or not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _fn_urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_eval_args_text(args), safe="")


def _fn_call(fn: Any, *args: Any) -> Any:
    fn = _iface(fn)
    if not callable(fn):
        raise _FuncError("call of nil" if fn is None else f"non-function of type {go_type(fn)}")
    return fn(*[_iface(a) for a in args])


def _str_fn(fn: Callable[[str], str]) -> Callable[[Any], str]:
    return lambda s: fn(_want_str(s))


def _header_identity(v: Any, *_ignored: Any) -> str:
    """Docker's HeaderFunctions: keep the column name intact (json/upper/... are no-ops)."""
    return _want_str(v)


class Func(NamedTuple):
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: variadic


FUNCS: dict[str, Func] = {
    # Go builtins ("and"/"or" are evaluated lazily by the executor).
    "and": Func(lambda *a: a[-1], 1, None),
    "or": Func(lambda *a: a[-1], 1, None),
    "not": Func(lambda v: not truth(v), 1, 1),
    "len": Func(_fn_len, 1, 1),
    "index": Func(_fn_index, 1, None),
    "slice": Func(_fn_slice, 1, None),
    "print": Func(lambda *a: sprint([_iface(x) for x in a]), 0, None),
    "printf": Func(lambda f, *a: sprintf(_want_str(f), [_iface(x) for x in a]), 1, None),
    "println": Func(lambda *a: " ".join(fmt_v(_iface(x)) for x in a) + "\n", 0, None),
    "eq": Func(_fn_eq, 1, None),
    "ne": Func(lambda a, b: not _fn_eq(a, b), 2, 2),
    "lt": Func(_fn_lt, 2, 2),
    "le": Func(_fn_le, 2, 2),
    "gt": Func(lambda a, b: not _fn_le(a, b), 2, 2),
    "ge": Func(lambda a, b: not _fn_lt(a, b), 2, 2),
    "html": Func(_fn_html, 0, None),
    "js": Func(_fn_js, 0, None),
    "urlquery": Func(_fn_urlquery, 0, None),
    "call": Func(_fn_call, 1, None),
    # Docker's templates.basicFunctions.
    "json": Func(lambda v: to_json(_iface(v)), 1, 1),
    "split": Func(_fn_split, 2, 2),
    "join": Func(_fn_join, 2, 2),
    "title": Func(_str_fn(_go_title), 1, 1),
    "lower": Func(_str_fn(str.lower), 1, 1),
    "upper": Func(_str_fn(str.upper), 1, 1),
    "pad": Func(_fn_pad, 3, 3),
    "truncate": Func(_fn_truncate, 2, 2),
}

HEADER_FUNCS: dict[str, Func] = {
    **FUNCS,
    "json": Func(_header_identity, 1, 1),
    "split": Func(_header_identity, 2, 2),
    "join": Func(_header_identity, 2, 2),
    "title": Func(_header_identity, 1, 1),
    "lower": Func(_header_identity, 1, 1),
    "upper": Func(_header_identity, 1, 1),
    "truncate": Func(_header_identity, 2, 2),
}
