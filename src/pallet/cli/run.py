"""`run` and `create`: docker's flags turned into an Engine API ContainerCreate body."""

from __future__ import annotations

import sys

from pallet.cli.args import out, requires
from pallet.cli.run_flags import create_body, create_parser
from pallet.engine.core import Engine
from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any


def create(prog: str, args: list[str]) -> int:
    p = create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")

    body = create_body(ns)
    _console_size(body)
    cid = _create(Engine(), body, ns.name)
    out(cid + "\n")
    return 0


def _create(engine: Engine, body: dict[str, Any], name: str | None) -> str:
    """Create, printing dockerd's warnings as docker's CLI does; failures exit 125 as docker's."""
    from pallet.engine import containers

    warnings: list[str] = []
    try:
        cid = containers.create(engine, body, name, warnings)
    except PalletError as e:
        e.exit_code = 125
        raise
    finally:
        for w in warnings:
            sys.stderr.write(f"WARNING: {w}\n")
    return cid


def run(prog: str, args: list[str]) -> int:
    p = create_parser(prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true")
    ns = p.parse(args)
    requires([ns.image] if ns.image else [], prog, "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    from pallet.cli import attach

    # Refused before anything is created, as docker's CLI does.
    sig_proxy = attach.parse_bool(ns.sig_proxy)
    if not ns.detach:
        from pallet.cli import detach_keys

        detach_keys.parse(getattr(ns, "detach_keys", None))
        attach.check_tty(ns.interactive, ns.tty)
    from pallet.engine import lifecycle

    engine = Engine()
    body = create_body(ns)
    _console_size(body)
    if ns.detach:
        body["AttachStdin"] = body["AttachStdout"] = body["AttachStderr"] = False
        body["StdinOnce"] = False
    cid = _create(engine, body, ns.name)
    if ns.detach:
        _start_or_125(lambda: lifecycle.start(engine, cid))
        out(cid + "\n")
        return 0
    try:
        keys = getattr(ns, "detach_keys", None)
        return attach.attached_start(engine, cid, stdin=ns.interactive, sig_proxy=sig_proxy, detach_keys=keys)
    except PalletError as e:
        if ns.rm:
            try:
                lifecycle.remove(engine, cid, force=True, volumes=True)  # --rm: anonymous volumes too
            except PalletError:
                pass
        e.exit_code = 125
        raise


def _console_size(body: dict[str, Any]) -> None:
    """A TTY container starts with our terminal's size (HostConfig.ConsoleSize, [height, width]), as
    docker's CLI sends it: no race with a first RESIZE."""
    if not body.get("Tty"):
        return
    from pallet.cli.terminal import our_size

    size = our_size()
    if size:
        body.setdefault("HostConfig", {})["ConsoleSize"] = list(size)


def _start_or_125(fn: Any) -> Any:
    try:
        return fn()
    except PalletError as e:
        e.exit_code = 125
        raise
