"""argparse set up the way docker's flags behave: `--help` only (`-h` is free for commands
such as `run -h HOSTNAME`), errors as one line and exit 125."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from pallet.errors import InvalidArgument


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, usage: str, description: str = "") -> None:
        super().__init__(
            prog=prog, usage=f"{prog} {usage}", description=description, add_help=False, allow_abbrev=False
        )
        self.add_argument("--help", action="help", help="Print usage")

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            message = "unknown flag: " + message.split(": ", 1)[1].split()[0]
        raise InvalidArgument(f"{message}\nSee '{self.prog} --help'.")

    def parse(self, args: list[str]) -> argparse.Namespace:
        return self.parse_args(args)


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


def for_each(names: list[str], action: Callable[[str], object], *,
             quiet_errors: tuple[type[Exception], ...] = ()) -> int:
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
