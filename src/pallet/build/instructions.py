"""Typed records of Dockerfile instructions, with their flags parsed and nothing expanded yet.

Each record keeps where it came from (lines and source text). Instructions whose words docker
expands with the stage's variables have an `expanded(expander)` method that returns a copy with
the words replaced (BuildKit's Expand/ExpandRaw); the others return themselves. ARG is expanded
by the stage scope, which must see the definitions one by one (see `scope`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from pallet.build.mounts import Mount, parse_mount
from pallet.build.parser import Heredoc, Node

__all__ = [
    "Add", "Arg", "ArgDefinition", "Cmd", "Copy", "Entrypoint", "Env", "Expander", "Expose", "From",
    "Healthcheck", "Instruction", "KeyValue", "Label", "Maintainer", "Onbuild", "Run", "Shell",
    "SourceContent", "Stopsignal", "User", "Volume", "Workdir",
]


class Expander(Protocol):
    """Expands words with the variables in scope at one instruction."""

    def word(self, text: str) -> str:
        """One word, quotes and escapes removed (ProcessWord)."""
        ...

    def words(self, text: str) -> list[str]:
        """Expanded then split on unquoted whitespace (ProcessWords)."""
        ...

    def raw(self, text: str) -> str:
        """Heredoc bodies: variables expanded, quotes left alone."""
        ...


@dataclass(kw_only=True)
class Instruction:
    keyword: ClassVar[str] = ""
    line: int = 0
    end_line: int = 0
    source: str = ""  # the instruction as written (continuations joined)

    def expanded(self, expander: Expander) -> Self:
        return self


@dataclass
class KeyValue:
    key: str
    value: str
    no_delim: bool = False  # legacy `ENV key value` form


@dataclass
class ArgDefinition:
    key: str
    value: str | None = None  # None: declared without a default


@dataclass
class SourceContent:
    """An inline source of COPY/ADD (a heredoc) that becomes the file `path`."""

    path: str
    data: str
    expand: bool


@dataclass(kw_only=True)
class From(Instruction):
    keyword = "FROM"
    base: str
    name: str = ""  # the stage name (`AS name`), lower-cased; "" for an unnamed stage
    platform: str = ""  # --platform, unexpanded


@dataclass(kw_only=True)
class _CommandLine(Instruction):
    command: list[str] = field(default_factory=list)  # exec form, or one shell-form string
    shell_form: bool = True  # prepend the SHELL (sh -c) when running
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass(kw_only=True)
class Run(_CommandLine):
    keyword = "RUN"
    mount_specs: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)  # unexpanded; only `from` is final
    network: str = "default"
    security: str = "sandbox"
    devices: list[str] = field(default_factory=list)
    flags_used: list[str] = field(default_factory=list)

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, mounts=[parse_mount(s, expander.word) for s in self.mount_specs])


@dataclass(kw_only=True)
class Cmd(_CommandLine):
    keyword = "CMD"


@dataclass(kw_only=True)
class Entrypoint(_CommandLine):
    keyword = "ENTRYPOINT"


@dataclass(kw_only=True)
class _SourcesAndDest(Instruction):
    sources: list[str] = field(default_factory=list)
    dest: str = ""
    contents: list[SourceContent] = field(default_factory=list)
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: list[str] = field(default_factory=list)

    def expanded(self, expander: Expander) -> Self:
        contents = [dataclasses.replace(c, data=expander.raw(c.data)) if c.expand else c
                    for c in self.contents]
        return dataclasses.replace(
            self, sources=[expander.word(s) for s in self.sources], dest=expander.word(self.dest),
            contents=contents, chown=expander.word(self.chown), chmod=expander.word(self.chmod))


@dataclass(kw_only=True)
class Copy(_SourcesAndDest):
    keyword = "COPY"
    from_: str = ""  # --from: a stage name or index, or an image reference
    parents: bool = False


@dataclass(kw_only=True)
class Add(_SourcesAndDest):
    keyword = "ADD"
    checksum: str = ""
    keep_git_dir: bool | None = None
    unpack: bool | None = None

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(super().expanded(expander), checksum=expander.word(self.checksum))


def _expand_pairs(pairs: list[KeyValue], expander: Expander) -> list[KeyValue]:
    return [KeyValue(expander.word(p.key), expander.word(p.value), p.no_delim) for p in pairs]


@dataclass(kw_only=True)
class Env(Instruction):
    keyword = "ENV"
    pairs: list[KeyValue]

    def expanded(self, expander: Expander) -> Self:
        # All pairs see the variables as they were before this ENV (`ENV a=1 b=$a` uses the old a).
        return dataclasses.replace(self, pairs=_expand_pairs(self.pairs, expander))


@dataclass(kw_only=True)
class Label(Instruction):
    keyword = "LABEL"
    pairs: list[KeyValue]

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, pairs=_expand_pairs(self.pairs, expander))


@dataclass(kw_only=True)
class Arg(Instruction):
    keyword = "ARG"
    args: list[ArgDefinition]


@dataclass(kw_only=True)
class Expose(Instruction):
    keyword = "EXPOSE"
    ports: list[str]

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, ports=[p for port in self.ports for p in expander.words(port)])


@dataclass(kw_only=True)
class Volume(Instruction):
    keyword = "VOLUME"
    paths: list[str]

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, paths=[expander.word(p) for p in self.paths])


@dataclass(kw_only=True)
class User(Instruction):
    keyword = "USER"
    user: str

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, user=expander.word(self.user))


@dataclass(kw_only=True)
class Workdir(Instruction):
    keyword = "WORKDIR"
    path: str

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, path=expander.word(self.path))


@dataclass(kw_only=True)
class Stopsignal(Instruction):
    keyword = "STOPSIGNAL"
    signal: str

    def expanded(self, expander: Expander) -> Self:
        return dataclasses.replace(self, signal=expander.word(self.signal))


@dataclass(kw_only=True)
class Onbuild(Instruction):
    keyword = "ONBUILD"
    expression: str  # the trigger as text, stored in the image config's OnBuild list
    trigger: Node | None = None


@dataclass(kw_only=True)
class Healthcheck(Instruction):
    keyword = "HEALTHCHECK"
    test: list[str]  # ["NONE"], ["CMD", exec…] or ["CMD-SHELL", "command"]
    interval: int = 0  # nanoseconds, 0 = inherit/default (as in the image config)
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(kw_only=True)
class Shell(Instruction):
    keyword = "SHELL"
    shell: list[str]


@dataclass(kw_only=True)
class Maintainer(Instruction):
    keyword = "MAINTAINER"
    maintainer: str
