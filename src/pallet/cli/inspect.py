"""`pallet inspect` (containers first, then images, as docker's generic inspect does) and
`pallet container inspect`, printed as docker's inspect does: an indented JSON array, one compact
object a line for `-f json`, or a Go template per object."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from pallet.cli.args import Parser, out, requires
from pallet.engine.core import Engine
from pallet.errors import NotFound, PalletError


class TemplateParseError(PalletError):
    exit_code = 64  # docker's StatusError for a template that does not parse


def inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] NAME|ID [NAME|ID...]")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] NAME|ID [NAME|ID...]")
    if ns.type not in (None, "", "container", "image"):
        raise PalletError(f'"{ns.type}" is not a valid value for --type')
    from pallet.engine import images
    from pallet.engine import inspect as inspection

    engine = Engine()

    def getter(name: str) -> Callable[[], Any]:
        def get() -> Any:
            if ns.type in (None, "", "container"):
                try:
                    return inspection.container(engine, name, size=ns.size)
                except NotFound:
                    if ns.type == "container":
                        raise
            try:
                return images.inspect_image(engine, name)
            except NotFound:
                if ns.type == "image":
                    raise NotFound(f"No such image: {name}") from None
                raise NotFound(f"No such object: {name}") from None

        return get

    return print_objects([getter(n) for n in ns.names], ns.format)


def container_inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] CONTAINER [CONTAINER...]")
    from pallet.engine import inspect as inspection

    engine = Engine()

    def getter(name: str) -> Callable[[], Any]:
        return lambda: inspection.container(engine, name, size=ns.size)

    return print_objects([getter(n) for n in ns.names], ns.format)


def print_objects(getters: list[Callable[[], Any]], fmt: str | None) -> int:
    """Print what was found, then one error line per name that was not (exit 1), as docker does."""
    from pallet.cli.format import TemplateError, parse_template

    template = None
    if fmt and fmt != "json":
        try:
            template = parse_template(fmt)
        except TemplateError as e:
            raise TemplateParseError(f"template parsing error: {e}") from None
    found: list[Any] = []
    errors: list[str] = []
    lines: list[str] = []
    for get in getters:
        try:
            obj = get()
        except PalletError as e:
            errors.append(str(e))
            continue
        found.append(obj)
        if fmt == "json":
            lines.append(parse_template("{{json .}}").execute(obj) + "\n")
        elif template is not None:
            try:
                lines.append(template.execute(obj) + "\n")
            except TemplateError as e:
                errors.append(f"template parsing error: {e}")
    if fmt:
        out("".join(lines))
    else:
        out(json.dumps(found, indent=4, ensure_ascii=False) + "\n")
    for message in errors:
        sys.stderr.write(message + "\n" if message.startswith("template") else f"Error: {message}\n")
    return 1 if errors else 0
