"""Small re-implementations of Go standard-library behaviour the Dockerfile frontend depends on.

BuildKit is written in Go; where its output depends on a Go library detail (what counts as a
space, how a string is quoted, how a path is cleaned) we follow Go, not Python, so that pallet
accepts and prints exactly what docker does.
"""

from __future__ import annotations

# Python's str.isspace() also accepts the ASCII separators U+001C..U+001F; Go's unicode.IsSpace does not.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace for one character."""
    return ch.isspace() and ch not in _NOT_GO_SPACE


def is_digit(ch: str) -> bool:
    """Go's unicode.IsDigit (category Nd)."""
    return ch.isdecimal()


def is_letter(ch: str) -> bool:
    """Go's unicode.IsLetter (category L*)."""
    return ch.isalpha()


def lstrip_space(s: str) -> str:
    """strings.TrimLeftFunc(s, unicode.IsSpace)."""
    i = 0
    while i < len(s) and is_space(s[i]):
        i += 1
    return s[i:]


def strip_space(s: str) -> str:
    """strings.TrimSpace."""
    s = lstrip_space(s)
    end = len(s)
    while end > 0 and is_space(s[end - 1]):
        end -= 1
    return s[:end]


_QUOTE_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def go_quote(s: str) -> str:
    """strconv.Quote: a double-quoted Go string literal (printable runes kept as they are)."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        else:
            code = ord(ch)
            if code < 0x20 or code == 0x7F:
                out.append(f"\\x{code:02x}")
            elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: list[str]) -> str:
    """fmt.Sprintf("%q", []string{...}): `["a" "b"]`."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def clean_path(path: str) -> str:
    """path/filepath.Clean for '/'-separated paths (posixpath.normpath keeps a leading '//')."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def suggest(value: str, options: list[str], *, case_sensitive: bool) -> str | None:
    """BuildKit's util/suggest: the closest option at edit distance < 3, in the caller's casing."""
    probe = value if case_sensitive else value.lower()
    match: str | None = None
    best = 3
    for opt in options:
        candidate = opt if case_sensitive else opt.lower()
        if candidate == probe:
            return None  # an exact match means the error is about something else
        dist = levenshtein(probe, candidate)
        if dist < best:
            best = dist
            match = candidate
    if match is None or case_sensitive:
        return match
    if value == value.lower():
        return match.lower()
    if value == value.upper():
        return match.upper()
    return match


def with_suggestion(message: str, value: str, options: list[str], *, case_sensitive: bool) -> str:
    match = suggest(value, options, case_sensitive=case_sensitive)
    return f"{message} (did you mean {match}?)" if match else message
