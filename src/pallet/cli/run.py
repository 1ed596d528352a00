"""`run` and `create`: docker's flags turned into an Engine API ContainerCreate body."""

from __future__ import annotations

from typing import Any

from pallet.cli.args import out, requires
from pallet.cli.run_flags import create_body, create_parser
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError


def create(prog: str, args: list[str]) -> int:
    p = create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    from pallet.engine import containers

    cid = _create_with_exit_code(lambda: containers.create(Engine(), create_body(ns), ns.name))
    out(cid + "\n")
    return 0


def _create_with_exit_code(fn: Any) -> str:
    """Daemon-side failures of create/run exit 125, as docker's do."""
    try:
        return str(fn())
    except PalletError as e:
        e.exit_code = 125
        raise


def run(prog: str, args: list[str]) -> int:
    p = create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    if ns.tty:
        raise InvalidArgument("--tty is not supported yet")
    from pallet.engine import containers, lifecycle

    engine = Engine()
    body = create_body(ns)
    if ns.detach:
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    cid = _create_with_exit_code(lambda: containers.create(engine, body, ns.name))
    if ns.detach:
        _start_or_125(lambda: lifecycle.start(engine, cid))
        out(cid + "\n")
        return 0
    from pallet.cli.attach import attached_start

    try:
        return attached_start(
            engine, cid, stdin=ns.interactive, sig_proxy=ns.sig_proxy.lower() not in ("false", "0")
        )
    except PalletError as e:
        if ns.rm:
            try:
                lifecycle.remove(engine, cid, force=True)
            except PalletError:
                pass
        e.exit_code = 125
        raise


def _start_or_125(fn: Any) -> Any:
    try:
        return fn()
    except PalletError as e:
        e.exit_code = 125
        raise
