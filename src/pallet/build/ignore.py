""".dockerignore: docker's pattern semantics (moby/patternmatcher) and a walker of the context.

Reading (ignorefile.ReadAll): a UTF-8 BOM is dropped, lines starting with `#` are comments,
surrounding whitespace is trimmed, `!` marks an exception, each pattern is cleaned like
filepath.Clean (`.` and `..` resolved, `//` squeezed) and a leading `/` is dropped.

Matching (PatternMatcher.MatchesOrParentMatches): patterns are tried in order, the last one
that matches decides; a pattern also matches every path under a directory it matches. `*` and
`?` never cross `/`, `**` crosses any number of directories (`**/x` also matches `x`), `[…]`
are character classes and `\\` escapes the next character.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pallet.build.gocompat import clean_path, strip_space

__all__ = ["ContextEntry", "DockerIgnore", "IgnorePattern", "glob_component", "read_patterns"]

_REGEX_ESCAPE = frozenset(".+()|{}$")
MatchType = Literal["exact", "prefix", "suffix", "regexp"]


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file's text, normalised as docker reads them."""
    patterns: list[str] = []
    for lineno, line in enumerate(text.split("\n")):
        if lineno == 0:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        if line.startswith("#"):
            continue
        pattern = strip_space(line)
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = strip_space(pattern[1:])
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


def _validate_glob(pattern: str) -> None:
    """Reject what Go's filepath.Match calls a malformed pattern (ErrBadPattern)."""
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("syntax error in pattern")
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            count = 0
            while True:
                if i >= n:
                    raise ValueError("syntax error in pattern")
                if pattern[i] == "]" and count > 0:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                    if hi < lo:
                        raise ValueError("syntax error in pattern")
                count += 1
            continue
        i += 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("syntax error in pattern")
    if pattern[i] == "\\":
        if i + 1 >= len(pattern):
            raise ValueError("syntax error in pattern")
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


def glob_component(pattern: str) -> re.Pattern[str]:
    """filepath.Match semantics for one name: `*`, `?`, `[a-z]`, `[^a]`, `\\x`; nothing crosses `/`."""
    _validate_glob(pattern)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = i
            negate = pattern[end:end + 1] == "^"
            body: list[str] = []
            j = end + 1 if negate else end
            while pattern[j] != "]" or not body:
                lo, j = _class_char(pattern, j)
                if pattern[j] == "-":
                    hi, j = _class_char(pattern, j + 1)
                    body.append(f"{re.escape(lo)}-{re.escape(hi)}")
                else:
                    body.append(re.escape(lo))
            i = j + 1
            out.append("[" + ("^/" if negate else "") + "".join(body) + "]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z")


def _compile(pattern: str) -> tuple[MatchType, re.Pattern[str] | None]:
    """patternmatcher's compile: cheap exact/prefix/suffix tests where possible, else a regex."""
    regex = ["^"]
    kind: MatchType = "exact"
    i = 0
    n = len(pattern)
    first = True
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # `**/` is `**`
                if i >= n:  # trailing `**` matches everything below, like .gitignore
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex.append(".*")
                        kind = "regexp"
                else:
                    regex.append("(.*/)?")  # any number of directories, even none
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                regex.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            regex.append("[^/]")
            kind = "regexp"
        elif ch in _REGEX_ESCAPE:
            regex.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                regex.append(re.escape(pattern[i]))
                i += 1
                kind = "regexp"
            else:
                regex.append("\\\\")
        elif ch in "[]":
            regex.append(ch)
            kind = "regexp"
        else:
            regex.append(ch)  # `^` too: it negates a class, as in Go
        first = False
    if kind != "regexp":
        return kind, None
    return kind, re.compile("".join(regex) + r"\Z")


@dataclass
class IgnorePattern:
    pattern: str  # cleaned, without the `!`
    exclusion: bool  # a `!` exception: re-includes what it matches
    kind: MatchType
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> IgnorePattern:
        text = clean_path(strip_space(text))
        exclusion = text.startswith("!")
        if exclusion:
            if len(text) == 1:
                raise ValueError('illegal exclusion pattern: "!"')
            text = text[1:]
        _validate_glob(text)
        try:
            kind, regex = _compile(text)
        except re.error as e:
            raise ValueError(f"syntax error in pattern {text!r}: {e}") from None
        return cls(text, exclusion, kind, regex)

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.pattern
        if self.kind == "prefix":
            return path.startswith(self.pattern[:-2])
        if self.kind == "suffix":
            suffix = self.pattern[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def could_match_inside(self, directory: str) -> bool:
        """Whether some path strictly under `directory` might match (decides if a walk descends)."""
        parts = self.pattern.split("/")
        dirs = directory.split("/")
        for i, name in enumerate(dirs):
            if i >= len(parts):
                return False
            if "**" in parts[i]:
                return True
            kind, regex = _compile(parts[i])
            if not (name == parts[i] if regex is None else regex.match(name) is not None):
                return False
        return len(parts) > len(dirs)


@dataclass
class ContextEntry:
    """One file, directory or symlink of the build context that .dockerignore lets through."""

    path: str  # relative, '/'-separated
    abspath: str
    stat: os.stat_result  # lstat: symlinks are not followed

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.stat.st_mode)


class DockerIgnore:
    """A compiled .dockerignore (an empty one excludes nothing)."""

    def __init__(self, patterns: list[str] | None = None) -> None:
        self.patterns = [IgnorePattern.compile(p) for p in patterns or [] if strip_space(p)]
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str) -> DockerIgnore:
        return cls(read_patterns(text))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> DockerIgnore:
        """Read a .dockerignore; a missing file ignores nothing."""
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                return cls.from_text(f.read())
        except FileNotFoundError:
            return cls()

    def matches(self, relpath: str) -> bool:
        """True if `relpath` (relative to the context) is excluded."""
        path = clean_path(relpath.replace(os.sep, "/")).removeprefix("/")
        if path in (".", ""):
            return False  # the context root itself is never excluded
        matched, _ = self._match(path, None)
        return matched

    def _match(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """MatchesUsingParentResults: per-pattern results of the parent spare re-testing its parents."""
        matched = False
        results = [False] * len(self.patterns)
        parent_dir = path.rpartition("/")[0]
        for i, pattern in enumerate(self.patterns):
            hit = parent[i] if parent is not None else False
            if not hit:
                if pattern.exclusion != matched:
                    continue  # cannot change the outcome
                hit = pattern.match(path)
                if not hit and parent is None and parent_dir:
                    prefixes = parent_dir.split("/")
                    hit = any(pattern.match("/".join(prefixes[:k])) for k in range(1, len(prefixes) + 1))
            results[i] = hit
            if hit:
                matched = not pattern.exclusion
        return matched, results

    def _may_reinclude_inside(self, directory: str) -> bool:
        return any(p.exclusion and p.could_match_inside(directory) for p in self.patterns)

    def walk(self, context_dir: str | os.PathLike[str], subdir: str = "") -> Iterator[ContextEntry]:
        """Included entries under `context_dir` (or its `subdir`), parents before children, by name.

        An excluded directory is entered only when an exception could re-include something
        in it; the directories above a re-included file are yielded with it.
        """
        root = os.fspath(context_dir)
        start = os.path.join(root, subdir) if subdir else root
        yield from self._walk_dir(start, subdir, None, _Pending())

    def _walk_dir(self, abs_dir: str, rel_dir: str, parent: list[bool] | None,
                  pending: _Pending) -> Iterator[ContextEntry]:
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            info = entry.stat(follow_symlinks=False)
            item = ContextEntry(rel, entry.path, info)
            excluded, results = self._match(rel, parent)
            is_dir = stat.S_ISDIR(info.st_mode)
            if excluded:
                if is_dir and self.has_exceptions and self._may_reinclude_inside(rel):
                    pending.push(item)
                    yield from self._walk_dir(entry.path, rel, results, pending)
                    pending.pop()
                continue
            yield from pending.flush()
            yield item
            if is_dir:
                yield from self._walk_dir(entry.path, rel, results, pending)


class _Pending:
    """Excluded directories being walked; yielded (once) above the first entry re-included in them."""

    def __init__(self) -> None:
        self.stack: list[ContextEntry] = []
        self.emitted = 0

    def push(self, entry: ContextEntry) -> None:
        self.stack.append(entry)

    def pop(self) -> None:
        self.stack.pop()
        self.emitted = min(self.emitted, len(self.stack))

    def flush(self) -> list[ContextEntry]:
        out = self.stack[self.emitted:]
        self.emitted = len(self.stack)
        return out
