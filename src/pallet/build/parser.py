"""Dockerfile syntax: lines to a flat list of instruction nodes (BuildKit's parser behaviour).

Handles parser directives (`# syntax=`, `# escape=`, `# check=`, only before anything else),
comments, line continuations with the escape token (comment and empty lines inside a
continuation are skipped, the latter with a warning), builder flags (`--from=x`), JSON versus
shell forms and heredocs (`RUN <<EOF`, `<<-EOF`, quoted delimiters, several per line).
Nothing is expanded here; see `instructions` for the typed records.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pallet.build.errors import DockerfileError, ExpansionError
from pallet.build.gocompat import go_quote, go_quote_list, lstrip_space, strip_space
from pallet.build.line_parsers import LineSyntaxError, parse_arguments, split_command
from pallet.build.shell import ShellLexer

__all__ = ["Heredoc", "Node", "ParseResult", "parse", "parse_heredoc"]

DEFAULT_ESCAPE = "\\"
_VALID_DIRECTIVES = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)")
_HEREDOC_INSTRUCTIONS = ("add", "copy", "run")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass
class Heredoc:
    """An inline document: `<<EOF` … `EOF`. `content` is raw, with every line's newline."""

    name: str
    content: str = ""
    expand: bool = True  # False when any part of the delimiter was quoted
    chomp: bool = False  # `<<-`: leading tabs are stripped from the content and the terminator
    fd: int = 0  # `3<<EOF`

    @property
    def text(self) -> str:
        """The content as the command sees it (tabs removed for `<<-`)."""
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass
class Node:
    """One instruction as written: keyword, flags, unexpanded arguments and where it is."""

    keyword: str  # as written ("RUN", "run")
    flags: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    json: bool = False  # exec form (a JSON array)
    child: Node | None = None  # ONBUILD's trigger instruction
    heredocs: list[Heredoc] = field(default_factory=list)
    original: str = ""  # the logical line, continuations joined
    start_line: int = 0
    end_line: int = 0
    comments: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.keyword.lower()

    def dump(self) -> str:
        """BuildKit's S-expression form, as in the parser fixtures' `result` files."""
        out = self.keyword.lower()
        if self.flags:
            out += " " + go_quote_list(self.flags)
        for arg in self.args:
            out += " " + go_quote(arg)
        if self.child is not None:
            out += " (" + self.child.dump() + ")"
        return out.strip()

    def can_contain_heredoc(self) -> bool:
        node = self.child if self.name == "onbuild" and self.child is not None else self
        return node.name in _HEREDOC_INSTRUCTIONS and not node.json


@dataclass
class ParseResult:
    nodes: list[Node]
    directives: dict[str, str]
    escape: str
    warnings: list[str]


class _Directives:
    """Parser directives: `# key=value` lines at the very top, before any other line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = False
        self.values: dict[str, str] = {}
        self.escape = DEFAULT_ESCAPE

    def feed(self, line: str, lineno: int) -> bool:
        """Look at one line (newline and leading blanks removed); True if it was a directive."""
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE.fullmatch(lstrip_space(line[1:]))
        key = m.group(1).lower() if m else ""
        if m is None or key not in _VALID_DIRECTIVES:
            self.done = True
            return False
        if key in self.values:
            raise DockerfileError(f"only one {key} parser directive can be used", path=self.path, line=lineno)
        value = m.group(2)
        if key == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\",
                                      path=self.path, line=lineno)
            self.escape = value
        self.values[key] = value
        return True


def _physical_lines(text: str) -> Iterator[str]:
    """Lines with their "\\n" kept (heredoc bodies need them); only "\\n" ends a line."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def _is_comment(line: str) -> bool:
    return lstrip_space(line).startswith("#")


@functools.cache
def _continuation_regex(escape: str) -> re.Pattern[str]:
    # The escape token ends a line that continues, unless it is itself escaped; a line that
    # is only the token (plus blanks) continues too.
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _trim_continuation(line: str, regex: re.Pattern[str]) -> tuple[str, bool]:
    """(line without its continuation token, True if the instruction ends on this line)."""
    if regex.search(line):
        return regex.sub(lambda m: m.group(1) or "", line), False
    return line, True


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word such as `<<EOF`, `<<-"EOF"` or `3<<EOF` opens, if any."""
    m = _HEREDOC.fullmatch(word)
    if m is None or m.group(3) == "":
        return None
    rest = m.group(3)
    # Lex the delimiter with and without quote removal: if the counts of quote characters
    # differ, part of it was quoted, and then the content is not expanded.
    plain = ShellLexer(DEFAULT_ESCAPE, skip_unset=True).process_words(rest, {})
    if len(plain) != 1:
        return None
    raw = ShellLexer(DEFAULT_ESCAPE, skip_unset=True, raw_quotes=True).process_words(rest, {})
    if len(raw) != 1:
        raise ExpansionError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return Heredoc(name=plain[0], expand=quotes(plain[0]) == quotes(raw[0]), chomp=m.group(2) == "-",
                   fd=int(m.group(1) or 0))


def _heredocs_in_line(line: str) -> list[Heredoc]:
    lexer = ShellLexer(DEFAULT_ESCAPE, raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process_words(line, {})
    except ExpansionError:
        words = []  # BuildKit ignores a line it cannot lex here; the instruction fails later
    return [doc for word in words if (doc := parse_heredoc(word)) is not None]


def _node_from_line(line: str, escape: str, comments: list[str]) -> Node:
    keyword, flags, rest = split_command(line, escape)
    parsed = parse_arguments(keyword, rest, escape)
    node = Node(keyword=keyword, flags=flags, args=parsed.args, json=parsed.json, original=line,
                comments=list(comments))
    if parsed.subcommand is not None:
        node.child = _node_from_line(parsed.subcommand, escape, [])
    return node


class _Lines:
    """The physical lines of the file and a cursor; `lineno` is the 1-based number of the last read."""

    def __init__(self, text: str) -> None:
        self.lines = list(_physical_lines(text.removeprefix("\ufeff")))
        self.lineno = 0

    def more(self) -> bool:
        return self.lineno < len(self.lines)

    def next(self) -> str:
        self.lineno += 1
        return self.lines[self.lineno - 1]


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.lines = _Lines(text)
        self.path = path
        self.directives = _Directives(path)
        self.comments: list[str] = []  # the comment lines right above the next instruction
        self.warnings: list[str] = []

    def error(self, message: str, start: int) -> DockerfileError:
        return DockerfileError(message, path=self.path, line=start, end_line=self.lines.lineno)

    def logical_line(self) -> str | None:
        """The next instruction's text with continuations joined, or None for a comment/blank line."""
        raw = self.lines.next()
        if _is_comment(raw):
            comment = strip_space(lstrip_space(raw)[1:])
            self.comments = [*self.comments, comment] if comment else []
        token = lstrip_space(raw.rstrip("\r\n"))
        if self.directives.feed(token, self.lines.lineno) and self.comments:
            self.comments = self.comments[:-1]  # a directive is not a doc comment
        if _is_comment(token):
            token = ""
        regex = _continuation_regex(self.directives.escape)
        token, ended = _trim_continuation(token, regex)
        if ended and not token:
            return None
        parts = [token]
        empty_continuation = False
        while not ended and self.lines.more():
            raw = self.lines.next()
            token = raw.rstrip("\r\n")
            self.directives.feed(token, self.lines.lineno)
            if _is_comment(raw):
                continue  # comments inside a continued instruction are dropped
            if not lstrip_space(token):
                empty_continuation = True
                continue
            token, ended = _trim_continuation(token, regex)
            parts.append(token)
        line = "".join(parts)
        if empty_continuation:
            self.warnings.append(f"{self.path}:{self.lines.lineno}: Empty continuation line found in: {line}")
        return line

    def read_heredocs(self, node: Node, start: int) -> None:
        """Attach the bodies of the heredocs the instruction opens; they follow it, in order."""
        try:
            docs = _heredocs_in_line(node.original)
        except ExpansionError as e:
            raise self.error(e.message, start) from None
        for doc in docs:
            body: list[str] = []
            while True:
                if not self.lines.more():
                    raise self.error("unterminated heredoc", start)
                raw = self.lines.next()
                candidate = raw.rstrip("\r\n")
                if doc.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == doc.name:
                    break
                body.append(raw)
            doc.content = "".join(body)
            node.heredocs.append(doc)

    def parse(self) -> ParseResult:
        nodes: list[Node] = []
        while self.lines.more():
            start = self.lines.lineno + 1
            line = self.logical_line()
            if line is None:
                continue
            try:
                node = _node_from_line(line, self.directives.escape, self.comments)
            except LineSyntaxError as e:
                raise self.error(str(e), start) from None
            if node.can_contain_heredoc() and "<<" in line:
                self.read_heredocs(node, start)
            node.start_line, node.end_line = start, self.lines.lineno
            nodes.append(node)
            self.comments = []
        if not nodes:
            raise DockerfileError("file with no instructions", path=self.path, line=self.lines.lineno or None)
        return ParseResult(nodes=nodes, directives=dict(self.directives.values),
                           escape=self.directives.escape, warnings=self.warnings)


def parse(text: str, *, path: str = "Dockerfile") -> ParseResult:
    """Parse Dockerfile text into instruction nodes; errors name `path` and the line."""
    return _Parser(text, path).parse()
