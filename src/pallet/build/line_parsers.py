"""How each instruction's text after the keyword becomes its list of arguments.

One function per argument style of BuildKit's parser (line_parsers.go): JSON-or-shell (RUN, CMD,
ENTRYPOINT, SHELL), JSON-or-list (ADD, COPY, VOLUME), whitespace lists (FROM, EXPOSE), name/value
pairs (ENV, LABEL), words (ARG), a single string (USER, WORKDIR, …), HEALTHCHECK and ONBUILD.
Quotes are kept at this stage; they are removed later, when words are expanded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pallet.build.gocompat import go_quote, is_space, lstrip_space, strip_space

__all__ = [
    "LineSyntaxError",
    "ParsedArgs",
    "extract_flags",
    "parse_arguments",
    "parse_words",
    "split_command",
]

# Go's reWhitespace: the separators of FROM/EXPOSE lists and of KEY value pairs (no newline).
WHITESPACE = re.compile(r"[\t\v\f\r ]+")
NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


class LineSyntaxError(Exception):
    """An instruction line that cannot be split into arguments; the caller adds the location."""


@dataclass
class ParsedArgs:
    args: list[str]
    json: bool = False
    subcommand: str | None = None  # ONBUILD: the text of the nested instruction


def split_command(line: str, escape: str) -> tuple[str, list[str], str]:
    """`RUN --mount=x echo hi` -> ("RUN", ["--mount=x"], "echo hi")."""
    parts = WHITESPACE.split(strip_space(line), maxsplit=1)
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = extract_flags(parts[1], escape)
    return parts[0], flags, strip_space(rest)


def extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading `--name[=value]` words (quotes and escapes removed); `--` ends them."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    phase = "spaces"
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if is_space(ch):
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            phase = "word"
        if pos == n:
            text = "".join(word)
            if text != "--" and (blank_ok or text):
                words.append(text)
            break
        if phase == "word":
            if is_space(ch):
                text = "".join(word)
                phase = "spaces"
                if text == "--":
                    return line[pos:], words
                if blank_ok or text:
                    words.append(text)
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = "quote"
                pos += 1
                continue
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        # inside quotes
        if ch == quote:
            phase = "word"
            pos += 1
            continue
        if ch == escape:
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words (ENV, LABEL, ARG)."""
    words: list[str] = []
    word: list[str] = []
    phase = "spaces"
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == "spaces":
            if pos == n:
                break
            if is_space(ch):
                pos += 1
                continue
            phase = "word"
        if pos == n:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == "word":
            if is_space(ch):
                phase = "spaces"
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = "quote"
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the very end is dropped
                # Unquoted: keep the escape and the character after it, even a quote.
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        # inside quotes
        if ch == quote:
            phase = "word"
        if ch == escape and quote != "'":  # nothing can be escaped inside single quotes
            if pos + 1 == n:
                phase = "word"
                pos += 1
                continue
            pos += 1
            word.append(ch)
            ch = rest[pos]
        word.append(ch)
        pos += 1
    return words


class _NotJSON(Exception):
    pass


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON constant {name}")  # NaN/Infinity are not JSON to Go


def _parse_json(rest: str) -> list[str]:
    rest = lstrip_space(rest)
    if not rest.startswith("["):
        raise _NotJSON
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        raise _NotJSON from None
    if not isinstance(value, list):
        raise _NotJSON
    if not all(isinstance(item, str) for item in value):
        raise LineSyntaxError(NOT_STRING_ARRAY)
    return value


def _whitespace_list(rest: str) -> list[str]:
    return WHITESPACE.split(rest) if rest else []


def _maybe_json(rest: str, escape: str) -> ParsedArgs:
    # A line starting with `[` that is not a valid JSON array of strings is shell form.
    if rest == "":
        return ParsedArgs([])
    try:
        return ParsedArgs(_parse_json(rest), json=True)
    except _NotJSON:
        return ParsedArgs([rest])


def _maybe_json_list(rest: str, escape: str) -> ParsedArgs:
    try:
        return ParsedArgs(_parse_json(rest), json=True)
    except _NotJSON:
        return ParsedArgs(_whitespace_list(rest))


def _whitespace(rest: str, escape: str) -> ParsedArgs:
    return ParsedArgs(_whitespace_list(rest))


def _string(rest: str, escape: str) -> ParsedArgs:
    return ParsedArgs([rest] if rest else [])


def _name_or_name_value(rest: str, escape: str) -> ParsedArgs:
    return ParsedArgs(parse_words(rest, escape))


def _name_value(rest: str, escape: str, key: str) -> ParsedArgs:
    # `KEY name value` (legacy: one pair, the value is the rest of the line) when the first
    # word has no "=", else `KEY a=1 b=2`. Every pair is (name, value, separator).
    words = parse_words(rest, escape)
    if not words:
        return ParsedArgs([])
    if "=" not in words[0]:
        parts = WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise LineSyntaxError(f"{key} must have two arguments")
        return ParsedArgs([parts[0], parts[1], ""])
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise LineSyntaxError(
                f"Syntax error - can't find = in {go_quote(word)}. "
                "Must be of the form: name=value")
        name, value = word.split("=", 1)
        args += [name, value, "="]
    return ParsedArgs(args)


def _env(rest: str, escape: str) -> ParsedArgs:
    return _name_value(rest, escape, "ENV")


def _label(rest: str, escape: str) -> ParsedArgs:
    return _name_value(rest, escape, "LABEL")


def _healthcheck(rest: str, escape: str) -> ParsedArgs:
    # The first word is the type (CMD, NONE…); the rest is a command in JSON or shell form.
    sep = 0
    while sep < len(rest) and not is_space(rest[sep]):
        sep += 1
    if sep == 0:
        return ParsedArgs([])
    command = _maybe_json(lstrip_space(rest[sep:]), escape)
    return ParsedArgs([rest[:sep], *command.args], json=command.json)


def _onbuild(rest: str, escape: str) -> ParsedArgs:
    return ParsedArgs([], subcommand=rest or None)


def _ignore(rest: str, escape: str) -> ParsedArgs:
    return ParsedArgs([])


_DISPATCH = {
    "add": _maybe_json_list,
    "arg": _name_or_name_value,
    "cmd": _maybe_json,
    "copy": _maybe_json_list,
    "entrypoint": _maybe_json,
    "env": _env,
    "expose": _whitespace,
    "from": _whitespace,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _string,
    "onbuild": _onbuild,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _string,
    "user": _string,
    "volume": _maybe_json_list,
    "workdir": _string,
}

KNOWN_INSTRUCTIONS = tuple(_DISPATCH)


def parse_arguments(instruction: str, rest: str, escape: str) -> ParsedArgs:
    """Arguments of one instruction; unknown instructions get none (they fail when typed)."""
    return _DISPATCH.get(instruction.lower(), _ignore)(rest, escape)
