"""`volume create|ls|inspect|rm|prune`."""

from __future__ import annotations

from pallet.cli.args import Parser, confirm, for_each, out, requires
from pallet.cli.units import human_size
from pallet.engine import volumes as verbs
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {v!r}: expected key=value")
        result[key] = val
    return result


def create(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] [VOLUME]")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("volume", nargs="?")
    ns = p.parse(args)
    if ns.name and ns.volume and ns.name != ns.volume:
        raise InvalidArgument(
            "conflicting options: either specify --name or provide positional arg, not both"
        )
    rec = verbs.create(
        Engine(),
        ns.volume or ns.name,
        driver=ns.driver,
        labels=_pairs(ns.label, "label"),
        options=_pairs(ns.opt, "option"),
    )
    out(rec.name + "\n")
    return 0


def ls(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    ns = p.parse(args)
    from pallet.engine.filters import parse_filters

    filters = parse_filters(ns.filter, {"dangling", "name", "label", "driver"})
    recs = verbs.list_volumes(Engine(), filters)
    if ns.quiet:
        out("".join(r.name + "\n" for r in recs))
        return 0
    from pallet.cli.format import format_rows

    rows = [
        {
            "Driver": r.driver,
            "Name": r.name,
            "Scope": "local",
            "Mountpoint": "",
            "Labels": ",".join(f"{k}={v}" for k, v in r.labels.items()),
            "Links": "N/A",
            "Size": "N/A",
        }
        for r in recs
    ]
    out(
        format_rows(
            ns.format,
            rows,
            [("DRIVER", "{{.Driver}}"), ("VOLUME NAME", "{{.Name}}")],
            {"Name": "VOLUME NAME", "Driver": "DRIVER", "Mountpoint": "MOUNTPOINT"},
        )
    )
    return 0


def inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] VOLUME [VOLUME...]")
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] VOLUME [VOLUME...]")
    from pallet.cli.images import print_inspect

    engine = Engine()
    return print_inspect([lambda n=n: verbs.inspect(engine, n) for n in ns.names], ns.format)


def rm(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] VOLUME [VOLUME...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] VOLUME [VOLUME...]")
    engine = Engine()
    return for_each(ns.names, lambda name: verbs.remove(engine, name, force=ns.force))


def prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    ns = p.parse(args)
    if not ns.force and not confirm(
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    ):
        return 0
    from pallet.engine.filters import parse_filters

    names, freed = verbs.prune(
        Engine(), all_volumes=ns.all, filters=parse_filters(ns.filter, {"label", "all"})
    )
    if names:
        out("Deleted Volumes:\n" + "".join(n + "\n" for n in names) + "\n")
    out(f"Total reclaimed space: {human_size(freed)}\n")
    return 0
