"""docker's command-line flags (spf13/pflag as docker's CLI sets it up) behind the part of argparse's
add_argument API that pallet's commands use. argparse cost `pallet run` ~10 ms (its import, one
HelpFormatter per option, regular expressions at parse time); this costs well under 1 ms.

pflag's rules: `--flag=value`, `--flag value`, `-f value`, `-fvalue`, `-f=value`; short booleans
combine (`-dit`) and a short flag that takes a value ends its cluster (`-p8080:80`); booleans and
flags with an optional value (`--sig-proxy`) take one only after `=` (`--rm=false`); `--` ends the
flags, `-` is a positional, names are never abbreviated. Flags may follow positionals, except in a
command with a REMAINDER positional (run, create, exec, top: pflag's SetInterspersed(false)), where
the first positional ends the flags and the rest is the container's command line. Errors are one
line as docker's, exit 125; `--help` (and `-h` where no flag has it) prints the usage, exits 0."""

from __future__ import annotations

import sys

from pallet.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

SUPPRESS = "==SUPPRESS=="  # help=SUPPRESS: left out of --help (argparse's spelling)
REMAINDER = "..."  # nargs=REMAINDER: the first positional ends the flags; this one takes the rest

# Go's strconv.ParseBool, which pflag's boolean flags use.
_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


class Namespace:
    """The parsed values: one attribute per dest, as argparse.Namespace (vars() lists them)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


class _Flag:
    """One option: its names, where its value goes and how it is read."""

    __slots__ = ("short", "long", "dest", "action", "noopt", "default", "type", "choices", "help")

    def __init__(
        self,
        short: str,
        long: str,
        dest: str,
        action: str,
        noopt: str | None,
        default: Any,
        type: Callable[[str], Any] | None,
        choices: Sequence[str] | None,
        help: str | None,
    ) -> None:
        self.short, self.long, self.dest, self.action = short, long, dest, action
        self.noopt = noopt  # pflag's NoOptDefVal: the value of a bare `--flag`, which then takes none
        self.default, self.type, self.choices, self.help = default, type, choices, help

    def name(self) -> str:
        """How pflag names the flag in errors: `-n, --last` or `--rm`."""
        if self.short and self.long:
            return f"-{self.short}, --{self.long}"
        return f"--{self.long}" if self.long else f"-{self.short}"

    def sort_key(self) -> str:
        return self.long or self.short

    def usage_name(self) -> str:
        """`  -e, --env list`, `      --name string`, `  -d, --detach`: names, then the value's kind."""
        if self.noopt is not None:
            kind = ""
        elif self.action == "append":
            kind = " list"
        else:
            kind = " int" if self.type is int else " string"
        if not self.long:
            return f"  -{self.short}{kind}"
        return (f"  -{self.short}, " if self.short else "      ") + f"--{self.long}{kind}"

    def usage_text(self) -> str:
        default = ""
        if self.noopt is None and self.action == "store" and self.default not in (None, ""):
            default = f"(default {self.default})" if self.type is int else f'(default "{self.default}")'
        return " ".join(t for t in (self.help or "", default) if t)


class Parser:
    """`Parser(prog, usage, description)`, then add_argument() as with argparse, then parse(args)."""

    def __init__(self, prog: str, usage: str, description: str = "") -> None:
        self.prog = prog
        self.usage = f"{prog} {usage}"
        self.description = description
        self._flags: list[_Flag] = []
        self._names: dict[str, _Flag] = {}  # "--env" and "-e" alike
        self._positionals: list[tuple[str, str | None, Any]] = []  # (dest, nargs, default)

    def add_argument(
        self,
        *names: str,
        action: str = "store",
        nargs: str | None = None,
        const: str | None = None,
        default: Any = None,
        type: Callable[[str], Any] | None = None,
        choices: Sequence[str] | None = None,
        dest: str | None = None,
        help: str | None = None,
    ) -> None:
        """The subset in use: action store|store_true|append; nargs None|"?"|"*"|REMAINDER for
        positionals, "?" with const for an option whose value is optional (`--sig-proxy[=BOOL]`)."""
        if not names[0].startswith("-"):
            if nargs not in (None, "?", "*", REMAINDER):
                raise ValueError(f"nargs={nargs!r} is not supported for a positional")
            self._positionals.append((dest or names[0], nargs, default))
            return
        if action not in ("store", "store_true", "append") or (nargs is not None and nargs != "?"):
            raise ValueError(f"unsupported option {names}: action={action!r} nargs={nargs!r}")
        longs = [n[2:] for n in names if n.startswith("--")]
        shorts = [n[1:] for n in names if not n.startswith("--")]
        dest = dest or (longs[0] if longs else shorts[0]).replace("-", "_")
        noopt = "true" if action == "store_true" else const if nargs == "?" else None
        if action == "store_true" and default is None:
            default = False
        flag = _Flag(
            shorts[0] if shorts else "",
            longs[0] if longs else "",
            dest,
            action,
            noopt,
            default,
            type,
            choices,
            help,
        )
        for n in names:
            if n in self._names or n == "--help":  # --help is built in
                raise ValueError(f"{self.prog}: flag {n} is already defined")
            self._names[n] = flag
        self._flags.append(flag)

    def parse(self, args: list[str]) -> Namespace:
        values: dict[str, Any] = {}
        for f in self._flags:
            values[f.dest] = list(f.default) if f.action == "append" and f.default is not None else f.default
        interspersed = all(nargs != REMAINDER for _, nargs, _ in self._positionals)
        positionals: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            i += 1
            if len(a) < 2 or a[0] != "-":
                positionals.append(a)
                if not interspersed:
                    positionals += args[i:]
                    break
            elif a == "--":
                positionals += args[i:]
                break
            elif a[1] == "-":
                i = self._long(a, args, i, values)
            else:
                i = self._shorts(a, args, i, values)
        self._assign(positionals, values)
        return Namespace(values)

    def _long(self, a: str, args: list[str], i: int, values: dict[str, Any]) -> int:
        name, eq, value = a[2:].partition("=")
        if not name or name[0] == "-":
            self.error(f"bad flag syntax: {a}")
        flag = self._names.get("--" + name)
        if flag is None:
            if name == "help":
                self._help()
            self.error(f"unknown flag: --{name}")
        if not eq:
            if flag.noopt is not None:
                value = flag.noopt
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                self.error(f"flag needs an argument: {a}")
        self._set(flag, value, values)
        return i

    def _shorts(self, a: str, args: list[str], i: int, values: dict[str, Any]) -> int:
        """A cluster such as `-dit`, `-p8080:80`, `-e=A=1`, `-e A=1` (pflag's parseSingleShortArg)."""
        shorts = a[1:]
        while shorts:
            c = shorts[0]
            flag = self._names.get("-" + c)
            if flag is None:
                if c == "h":
                    self._help()
                self.error(f"unknown shorthand flag: '{c}' in -{shorts}")
            if len(shorts) > 2 and shorts[1] == "=":
                value, shorts = shorts[2:], ""
            elif flag.noopt is not None:
                value, shorts = flag.noopt, shorts[1:]
            elif len(shorts) > 1:
                value, shorts = shorts[1:], ""
            elif i < len(args):
                value, shorts = args[i], ""
                i += 1
            else:
                self.error(f"flag needs an argument: '{c}' in -{shorts}")
            self._set(flag, value, values)
        return i

    def _set(self, flag: _Flag, value: str, values: dict[str, Any]) -> None:
        if flag.action == "store_true":
            if value not in _TRUE and value not in _FALSE:
                self._invalid(flag, value, f"strconv.ParseBool: parsing {_quote(value)}: invalid syntax")
            values[flag.dest] = value in _TRUE
            return
        if flag.choices is not None and value not in flag.choices:
            names = "/".join(n for n, f in self._names.items() if f is flag)
            choices = ", ".join(map(repr, flag.choices))
            self.error(f"argument {names}: invalid choice: {value!r} (choose from {choices})")
        converted: Any = value
        if flag.type is not None:
            try:
                converted = flag.type(value)
            except ValueError as e:
                why = (
                    f"strconv.ParseInt: parsing {_quote(value)}: invalid syntax"
                    if flag.type is int
                    else str(e)
                )
                self._invalid(flag, value, why)
        if flag.action == "append":
            if values[flag.dest] is None:
                values[flag.dest] = []
            values[flag.dest].append(converted)
        else:
            values[flag.dest] = converted

    def _assign(self, positionals: list[str], values: dict[str, Any]) -> None:
        """Hand the positionals out in order: "?" takes one if any is left, "*" and REMAINDER the rest."""
        rest = positionals
        for dest, nargs, default in self._positionals:
            if nargs is None:
                if not rest:
                    self.error(f"the following arguments are required: {dest}")
                values[dest], rest = rest[0], rest[1:]
            elif nargs == "?":
                values[dest], rest = (rest[0], rest[1:]) if rest else (default, rest)
            else:
                values[dest], rest = (rest or ([] if default is None else default)), []
        if rest:
            # docker's cli.NoArgs / cli.RequiresMaxArgs
            n = len(self._positionals)
            what = (
                "accepts no arguments." if not n else f"requires at most {n} argument{'s' if n > 1 else ''}."
            )
            raise InvalidArgument(
                f"\"{self.prog}\" {what}\nSee '{self.prog} --help'.\n\nUsage:  {self.usage}"
            )

    def _invalid(self, flag: _Flag, value: str, why: str) -> NoReturn:
        self.error(f"invalid argument {_quote(value)} for {_quote(flag.name())} flag: {why}")

    def error(self, message: str) -> NoReturn:
        raise InvalidArgument(f"{message}\nSee '{self.prog} --help'.")

    def _help(self) -> NoReturn:
        sys.stdout.write(self.format_help())
        raise SystemExit(0)

    def format_help(self) -> str:
        """docker's layout: usage, the description, then the flags sorted by name."""
        rows = [
            (f.usage_name(), f.usage_text())
            for f in sorted(self._flags, key=_Flag.sort_key)
            if f.help != SUPPRESS
        ]
        width = max((len(left) for left, _ in rows), default=0)
        parts = [f"Usage:  {self.usage}\n"]
        if self.description:
            parts.append(f"{self.description}\n")
        if rows:
            parts.append(
                "Options:\n" + "".join(f"{left:<{width}}   {text}".rstrip() + "\n" for left, text in rows)
            )
        return "\n".join(parts)


def _quote(s: str) -> str:
    """Go's %q, for the ASCII that flags carry."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def requires(ns_value: list[str], prog: str, what: str, at_least: int = 1) -> None:
    if len(ns_value) < at_least:
        raise InvalidArgument(
            f'"{prog}" requires at least {at_least} argument{"s" if at_least > 1 else ""}.\n'
            f"See '{prog} --help'.\n\nUsage:  {prog} {what}"
        )


def out(text: str) -> None:
    sys.stdout.write(text)


def confirm(warning: str) -> bool:
    """docker's prune prompt: the warning, then "Are you sure you want to continue? [y/N] "."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def for_each(
    names: list[str], action: Callable[[str], object], *, quiet_errors: tuple[type[Exception], ...] = ()
) -> int:
    """docker's multi-name commands (rm, volume rm, network rm): act on each name, print it when
    done, print one error line per failure and go on; exit 1 if any failed. Errors of the types in
    `quiet_errors` (e.g. NotFound under -f) are neither printed nor counted."""
    from pallet.errors import PalletError

    code = 0
    for name in names:
        try:
            action(name)
        except quiet_errors:
            continue
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
            continue
        out(name + "\n")
    return code
