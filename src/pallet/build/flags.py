"""Builder flags of an instruction (`COPY --from=x --chown=1:1 …`) and the value formats they use.

Each instruction declares the flags it accepts; parsing then checks the words the parser
extracted, with BuildKit's error texts (`unknown flag: --frm (did you mean from?)`,
`missing a value on flag: --from`, …). Go value syntaxes used by flags live here too:
strconv.ParseBool, time.ParseDuration and go-units' RAMInBytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pallet.build.gocompat import with_suggestion
from pallet.gounits import parse_go_duration
from pallet.gounits import ram_in_bytes as parse_ram_bytes

__all__ = ["Flag", "FlagError", "FlagSet", "parse_go_bool", "parse_go_duration", "parse_ram_bytes"]

FlagKind = Literal["bool", "string", "strings"]


class FlagError(ValueError):
    """A flag or flag value docker would reject; the caller adds the location."""


@dataclass
class Flag:
    name: str
    kind: FlagKind
    value: str = ""
    values: list[str] = field(default_factory=list)  # every occurrence, for repeatable flags
    used: bool = False

    @property
    def is_true(self) -> bool:
        return self.value == "true"


class FlagSet:
    """The flags one instruction accepts, then checked against the words that were written."""

    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        self.flags: dict[str, Flag] = {}

    def _add(self, name: str, kind: FlagKind, value: str) -> Flag:
        flag = Flag(name, kind, value)
        self.flags[name] = flag
        return flag

    def add_bool(self, name: str, default: bool = False) -> Flag:
        return self._add(name, "bool", "true" if default else "false")

    def add_string(self, name: str, default: str = "") -> Flag:
        return self._add(name, "string", default)

    def add_strings(self, name: str) -> Flag:
        return self._add(name, "strings", "")

    def used(self) -> list[str]:
        return [name for name, flag in self.flags.items() if flag.used]

    def parse(self) -> None:
        for word in self.words:
            if word == "--":
                return  # POSIX: everything after `--` is an operand
            if not word.startswith("--"):
                raise FlagError(f"arg should start with -- : {word}")
            flag_name, has_value, value = word.partition("=")
            name = flag_name[2:]
            flag = self.flags.get(name)
            if flag is None:
                raise FlagError(with_suggestion(f"unknown flag: {flag_name}", name, list(self.flags),
                                                case_sensitive=True))
            if flag.used and flag.kind != "strings":
                raise FlagError(f"duplicate flag specified: {flag_name}")
            flag.used = True
            if flag.kind == "bool":
                if has_value and value == "":
                    raise FlagError(f"missing a value on flag: {flag_name}")
                lowered = value.lower()
                if lowered not in ("true", "false", ""):
                    raise FlagError(f"expecting boolean value for flag {flag_name}, not: {value}")
                flag.value = "false" if lowered == "false" else "true"
            elif not has_value:
                raise FlagError(f"missing a value on flag: {flag_name}")
            elif flag.kind == "string":
                flag.value = value
            else:
                flag.values.append(value)


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(value: str) -> bool:
    """strconv.ParseBool."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid syntax: {value!r}")


