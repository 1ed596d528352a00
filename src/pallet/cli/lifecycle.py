"""Lifecycle commands: start, rm (and, as they come, stop, kill, restart, wait, pause, unpause,
rename, update, container prune)."""

from __future__ import annotations

import sys

from pallet.cli.args import Parser, out, requires
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError


def start(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.engine import lifecycle

    engine = Engine()
    if ns.attach or ns.interactive:
        if len(ns.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        from pallet.cli.attach import attached_start
        from pallet.engine.containers import lookup

        return attached_start(
            engine, lookup(engine, ns.containers[0]).id, stdin=ns.interactive, sig_proxy=True
        )
    code = 0
    for ref in ns.containers:
        try:
            lifecycle.start(engine, ref)
            out(ref + "\n")
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code


def rm(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    requires(ns.containers, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.engine import lifecycle

    engine = Engine()
    code = 0
    for ref in ns.containers:
        try:
            out(lifecycle.remove(engine, ref, force=ns.force) + "\n")
        except PalletError as e:
            sys.stderr.write(f"Error: {e}\n")
            code = 1
    return code
