"""The template lexer (text/template/parse/lex.go) and Go literal decoding (strconv).

``Lexer(src).run()`` turns a template into tokens; ``parse_number`` and
``unquote`` decode the number, string and character literals found in them.
"""

from __future__ import annotations

import re
from typing import NamedTuple, NoReturn

from pallet.cli.gotemplate.values import TemplateError, go_quote

# Token kinds.  Keywords carry their word as kind, e.g. "if", "end", ".", "nil".
TEXT, LDELIM, RDELIM, SPACE_TOK, EOF = "text", "{{", "}}", "space", "EOF"
FIELD, IDENT, VAR, BOOL, NUMBER, CHAR_CONST = "field", "ident", "var", "bool", "number", "charconst"
STRING, RAW, PIPE, LPAREN, RPAREN, DECLARE, ASSIGN, CHAR = (
    "string", "raw", "|", "(", ")", ":=", "=", "char"
)  # fmt: skip
_KEYWORDS = {
    ".",
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "nil",
    "template",
    "with",
}
_SPACE_CHARS = " \t\r\n"
_SPACE_SET = frozenset(_SPACE_CHARS)  # so that "" (end of input) is not a space


class Tok(NamedTuple):
    kind: str
    val: str
    pos: int

    def describe(self) -> str:
        """Go's item.String(), used in "unexpected ..." parse errors."""
        if self.kind == EOF:
            return "EOF"
        if self.kind in _KEYWORDS:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


def line_of(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


class Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[Tok] = []

    def fail(self, msg: str, pos: int) -> NoReturn:
        raise TemplateError(f"template: :{line_of(self.src, pos)}: {msg}")

    def emit(self, kind: str, start: int, end: int) -> int:
        self.toks.append(Tok(kind, self.src[start:end], start))
        return end

    def run(self) -> list[Tok]:
        src, pos = self.src, 0
        while True:
            start = src.find("{{", pos)
            if start < 0:
                if pos < len(src):
                    self.emit(TEXT, pos, len(src))
                break
            trim = src.startswith("-", start + 2) and src[start + 3 : start + 4] in _SPACE_SET
            text_end = start
            if trim:
                text_end = len(src[pos:start].rstrip(_SPACE_CHARS)) + pos
            if text_end > pos:
                self.emit(TEXT, pos, text_end)
            inner = start + (4 if trim else 2)
            if src.startswith("/*", inner):
                pos = self._comment(inner)
                continue
            self.toks.append(Tok(LDELIM, "{{", start))
            pos = self._inside_action(inner)
        self.toks.append(Tok(EOF, "", len(src)))
        return self.toks

    def _at_right_delim(self, p: int) -> tuple[bool, bool]:
        src = self.src
        if src[p : p + 1] in _SPACE_SET and src.startswith("-}}", p + 1):
            return True, True
        return src.startswith("}}", p), False

    def _after_right_delim(self, p: int, trim: bool) -> int:
        p += 4 if trim else 2
        if trim:
            while p < len(self.src) and self.src[p] in _SPACE_CHARS:
                p += 1
        return p

    def _comment(self, p: int) -> int:
        end = self.src.find("*/", p + 2)
        if end < 0:
            self.fail("unclosed comment", p)
        delim, trim = self._at_right_delim(end + 2)
        if not delim:
            self.fail("comment ends before closing delimiter", p)
        return self._after_right_delim(end + 2, trim)

    def _inside_action(self, p: int) -> int:
        depth = 0
        src = self.src
        while True:
            delim, trim = self._at_right_delim(p)
            if delim:
                if depth:
                    self.fail("unclosed left paren", p)
                self.toks.append(Tok(RDELIM, "}}", p + (2 if trim else 0)))
                return self._after_right_delim(p, trim)
            if p >= len(src):
                self.fail("unclosed action", p)
            ch = src[p]
            if ch in _SPACE_CHARS:
                p = self._space(p)
            elif ch == "(":
                depth += 1
                p = self.emit(LPAREN, p, p + 1)
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    self.fail("unexpected right paren", p)
                p = self.emit(RPAREN, p, p + 1)
            else:
                p = self._token(ch, p)

    def _token(self, ch: str, p: int) -> int:
        src = self.src
        if ch == "=":
            return self.emit(ASSIGN, p, p + 1)
        if ch == ":":
            if not src.startswith(":=", p):
                self.fail("expected :=", p)
            return self.emit(DECLARE, p, p + 2)
        if ch == "|":
            return self.emit(PIPE, p, p + 1)
        if ch in "\"'":
            return self._quoted(p, ch)
        if ch == "`":
            end = src.find("`", p + 1)
            if end < 0:
                self.fail("unterminated raw quoted string", p)
            return self.emit(RAW, p, end + 1)
        if ch in "$.":
            if ch == "." and src[p + 1 : p + 2].isdigit():
                return self._number(p)
            return self._field_or_variable(p)
        if ch in "+-" or ch.isdigit():
            return self._number(p)
        if _is_alnum(ch):
            return self._identifier(p)
        if ch.isascii() and ch.isprintable():
            return self.emit(CHAR, p, p + 1)
        self.fail(f"unrecognized character in action: {_unicode_desc(ch)}", p)

    def _space(self, p: int) -> int:
        start, src = p, self.src
        while p < len(src) and src[p] in _SPACE_CHARS:
            p += 1
        if src.startswith("-}}", p):
            p -= 1  # leave the last space for the " -}}" trim marker
            if p == start:
                return p
        return self.emit(SPACE_TOK, start, p)

    def _quoted(self, p: int, quote: str) -> int:
        src, i = self.src, p + 1
        what = "quoted string" if quote == '"' else "character constant"
        while True:
            ch = src[i : i + 1]
            if ch == "\\":
                i += 1
                ch = src[i : i + 1]
                if ch not in ("", "\n"):
                    i += 1
                    continue
            if ch in ("", "\n"):
                self.fail(f"unterminated {what}", p)
            i += 1
            if ch == quote:
                return self.emit(STRING if quote == '"' else CHAR_CONST, p, i)

    def _at_terminator(self, p: int) -> bool:
        ch = self.src[p : p + 1]
        if ch == "" or ch in _SPACE_CHARS or ch in ".,|:()":
            return True
        return self.src.startswith("}}", p)

    def _field_or_variable(self, p: int) -> int:
        kind = VAR if self.src[p] == "$" else FIELD
        i = p + 1
        if self._at_terminator(i):
            return self.emit(VAR if kind == VAR else ".", p, i)
        while i < len(self.src) and _is_alnum(self.src[i]):
            i += 1
        if not self._at_terminator(i):
            self.fail(f"bad character {_unicode_desc(self.src[i])}", i)
        return self.emit(kind, p, i)

    def _identifier(self, p: int) -> int:
        i = p
        while i < len(self.src) and _is_alnum(self.src[i]):
            i += 1
        if not self._at_terminator(i):
            self.fail(f"bad character {_unicode_desc(self.src[i])}", i)
        word = self.src[p:i]
        if word in _KEYWORDS:
            return self.emit(word, p, i)
        return self.emit(BOOL if word in ("true", "false") else IDENT, p, i)

    def _number(self, p: int) -> int:
        m = _NUMBER_RE.match(self.src, p)
        end = m.end() if m else p
        if end < len(self.src) and _is_alnum(self.src[end]):
            self.fail(f"bad number syntax: {go_quote(self.src[p : end + 1])}", p)
        return self.emit(NUMBER, p, end)


_NUMBER_RE = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[oO][0-7_]*|0[bB][01_]*"
    r"|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?"
)


def _unicode_desc(ch: str) -> str:
    """Go's %#U: U+0021 '!'."""
    return f"U+{ord(ch):04X} '{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"


# =============================================================================
# Literal values (strconv)
# =============================================================================


def parse_number(text: str) -> int | float:
    """A Go number literal: ints stay ints; a '.', exponent or hex-float makes a float64."""
    if text.endswith("i"):
        raise ValueError("complex numbers are not supported")
    body = text.lstrip("+-")
    is_hex = body[:2] in ("0x", "0X")
    if (is_hex and any(c in body for c in "pP")) or (not is_hex and any(c in body for c in ".eE")):
        if is_hex:
            return float.fromhex(text.replace("_", ""))
        return float(text)
    if re.fullmatch(r"[+-]?0[0-7_]+", text):
        return int(text.replace("_", ""), 8)  # Go's legacy octal "0755"
    return int(text, 0)


_UNQUOTE_SIMPLE = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
}  # fmt: skip
_UNQUOTE_HEX_LEN = {"x": 2, "u": 4, "U": 8}


def unquote(body: str, quote: str) -> str:
    """strconv.Unquote's escape handling for the inside of a "..." or '...' literal."""
    if "\\" not in body:
        if quote in body:
            raise ValueError("invalid syntax")
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _UNQUOTE_SIMPLE:
            out.append(_UNQUOTE_SIMPLE[esc])
            i += 2
        elif esc == quote:
            out.append(quote)
            i += 2
        elif esc in _UNQUOTE_HEX_LEN:
            digits = body[i + 2 : i + 2 + _UNQUOTE_HEX_LEN[esc]]
            if len(digits) != _UNQUOTE_HEX_LEN[esc]:
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        elif esc.isdigit():
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or int(digits, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)
