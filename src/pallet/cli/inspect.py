"""`pallet inspect`: containers first, then images, as docker's generic inspect does."""

from __future__ import annotations

from typing import Any

from pallet.cli.args import Parser, requires
from pallet.engine.core import Engine
from pallet.errors import NotFound


def inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] NAME|ID [NAME|ID...]")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type", choices=("container", "image"))
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] NAME|ID [NAME|ID...]")
    from pallet.cli.images import print_inspect
    from pallet.engine import images
    from pallet.engine import inspect as inspection

    engine = Engine()

    def getter(name: str) -> Any:
        def get() -> Any:
            if ns.type != "image":
                try:
                    return inspection.container(engine, name)
                except NotFound:
                    if ns.type == "container":
                        raise
            try:
                return images.inspect_image(engine, name)
            except NotFound:
                raise NotFound(f"No such object: {name}") from None
        return get

    return print_inspect([getter(n) for n in ns.names], ns.format)


def container_inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.cli.images import print_inspect
    from pallet.engine import inspect as inspection

    engine = Engine()
    return print_inspect([lambda n=n: inspection.container(engine, n) for n in ns.names], ns.format)
