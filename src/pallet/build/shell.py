"""Docker's shell-word expansion: `$VAR`, `${VAR}`, `${VAR:-x}`, quotes, escapes, word splitting.

This is the behaviour of BuildKit's frontend/dockerfile/shell lexer, which mimics a POSIX shell
only as far as Dockerfiles need: no command substitution, no globbing, no arithmetic. Positional
and special parameters (`$1`, `$@`, `$?`…) are recognised as names and are never set. Besides the
forms of the reference (`-`, `+`, `?`, with or without `:`), BuildKit also supports `${VAR#pat}`,
`${VAR%pat}` (and the greedy `##`/`%%`) and `${VAR/pat/repl}`, `${VAR//pat/repl}`.

ProcessWord (`expand`) keeps spaces between words; ProcessWords (`expand_words`) splits the
result on unquoted whitespace, after substitution, like a shell does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pallet.build.errors import ExpansionError
from pallet.build.gocompat import go_quote, is_digit, is_letter, is_space

__all__ = ["Expansion", "ShellLexer", "expand", "expand_words"]

_EOF = ""  # peek()/next() at the end of the input; every real character is non-empty
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_HEREDOC_SPACE = frozenset("\t\r ")


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word, with the variable names that were and weren't set."""

    result: str
    words: list[str]
    matched: frozenset[str]
    unmatched: frozenset[str]


class _Words:
    """Accumulates split words: unquoted whitespace ends a word, quoted text never does."""

    def __init__(self) -> None:
        self.buf = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            # An empty quoted string ("") never becomes a word of its own, as in BuildKit.
            if self.in_word and self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.buf += s
        self.in_word = True

    def result(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class ShellLexer:
    """Expands words of one Dockerfile with its escape token (`\\` or a backtick).

    raw_quotes keeps the quote characters in the output, raw_escapes keeps the escape token,
    skip_unset leaves references to unset variables as they were written, skip_quotes treats
    quotes as ordinary characters (heredoc bodies).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False, skip_quotes: bool = False) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def expand(self, word: str, env: Mapping[str, str]) -> Expansion:
        state = _WordState(self, word, env)
        try:
            result, words = state.process_stop_on(_EOF, self.raw_escapes)
        except _LexError as e:
            raise ExpansionError(f"failed to process {go_quote(word)}: {e}") from None
        return Expansion(result, words, frozenset(state.matched), frozenset(state.unmatched))

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self.expand(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self.expand(word, env).words


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand variables and remove quotes and escapes in `word`; spaces are kept."""
    return ShellLexer(escape).process_word(word, env)


def expand_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand `word`, then split it on unquoted whitespace (as EXPOSE and heredoc names are)."""
    return ShellLexer(escape).process_words(word, env)


class _LexError(Exception):
    pass


class _WordState:
    """One pass over one word: a cursor plus the matched/unmatched variable names."""

    def __init__(self, lexer: ShellLexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # --- cursor -------------------------------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch != _EOF:
            self.pos += 1
        return ch

    def getenv(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    # --- grammar ------------------------------------------------------------------------
    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to `stop` (consumed) or the end of input when stop is _EOF."""
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        special: dict[str, Callable[[], str]] = {"$": self.process_dollar, "<": self.process_heredoc_start}
        if not self.lx.skip_quotes:
            special["'"] = self.process_single_quote
            special['"'] = self.process_double_quote
        esc = self.lx.escape
        while self.peek() != _EOF:
            ch = self.peek()
            if stop != _EOF and ch == stop:
                self.next()
                return "".join(result), words.result()
            handler = special.get(ch)
            if handler is not None:
                piece = handler()
                result.append(piece)
                if ch == "$":
                    words.add_string(piece)  # substituted text is split
                else:
                    words.add_raw_string(piece)
                continue
            ch = self.next()
            if ch == esc:
                if self.raw_escapes:
                    words.add_raw_char(ch)
                    result.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break  # a trailing escape is dropped
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop != _EOF:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        out: list[str] = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def process_double_quote(self) -> str:
        # Literal except $ (expanded) and the escape token, which escapes only " $ and itself.
        out: list[str] = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        esc = self.lx.escape
        while True:
            nxt = self.peek()
            if nxt == _EOF:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if nxt == '"':
                ch = self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if nxt == "$":
                out.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                after = self.peek()
                if after == _EOF:
                    continue
                if after in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def process_heredoc_start(self) -> str:
        # `<<` and any blanks after it stay glued to the heredoc word that follows.
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        spaces: list[str] = []
        while self.peek() in _HEREDOC_SPACE:
            spaces.append(self.next())
        return "<<" + "".join(spaces)

    def process_name(self) -> str:
        name: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not name and is_digit(ch):
                while self.peek() != _EOF and is_digit(self.peek()):
                    name.append(self.next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (is_letter(ch) or is_digit(ch) or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if name == "":
                return "$"
            value, found = self.getenv(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.next()
        if self.peek() == _EOF:
            raise _LexError("syntax error: missing '}'")
        if self.peek() in ("{", "}", ":"):
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == "}":
            value, found = self.getenv(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._substitute(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%"):
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        pattern_mode = ch in ("#", "%")
        if null_is_unset and pattern_mode:
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        word = self._until("}", pattern_mode, "syntax error: missing '}'")
        value, found = self.getenv(name)
        if self.lx.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty_counts_as_unset = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty_counts_as_unset else value
        if ch == "+":
            return "" if empty_counts_as_unset else word
        if ch == "?":
            if not found:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value, greedy)
        return _trim_prefix(word, value, greedy)

    def _until(self, stop: str, raw_escapes: bool, eof_message: str) -> str:
        try:
            word, _ = self.process_stop_on(stop, raw_escapes)
        except _LexError:
            if self.peek() == _EOF:
                raise _LexError(eof_message) from None
            raise
        return word

    def _substitute(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self._until("/", True, "syntax error: missing '/' in ${}")
        replacement = self._until("}", True, "syntax error: missing '}'")
        value, found = self.getenv(name)
        if self.lx.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_to_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        m = regex.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end():]


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (`*`, `?`, backslash escapes; no bracket expressions) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue  # the escape only protected the ${} syntax
            i += 1
            if nxt not in ("*", "?", "\\"):
                shown = nxt if nxt else "\x00"
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'")
            out.append(re.escape(nxt))
        elif tok in _REGEX_SPECIAL:
            out.append("\\" + tok)
        else:
            out.append(tok)
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_to_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse the pattern but keep each escape in front of the character it escapes.
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Shortest/longest rightmost match = leftmost match on the reversed strings.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
