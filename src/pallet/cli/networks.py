"""`network create|ls|inspect|rm|prune|connect|disconnect`, as docker's CLI shows them."""

from __future__ import annotations

import sys
from typing import Any

from pallet.cli.args import Parser, for_each, out, requires
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for v in values:
        key, _, val = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {v!r}: expected key=value")
        result[key] = val
    return result


def _exactly(values: list[str], n: int, prog: str, usage: str) -> None:
    if len(values) != n:
        word = "argument" if n == 1 else "arguments"
        raise InvalidArgument(
            f"\"{prog}\" requires exactly {n} {word}.\nSee '{prog} --help'.\n\nUsage:  {prog} {usage}"
        )


def create(prog: str, args: list[str]) -> int:
    usage = "[OPTIONS] NETWORK"
    p = Parser(prog, usage)
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--scope")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    _exactly(ns.names, 1, prog, usage)
    if ns.ipam_driver != "default":
        raise PalletError(f'plugin "{ns.ipam_driver}" not found')
    for flag, values in (("--subnet", ns.subnet), ("--gateway", ns.gateway), ("--ip-range", ns.ip_range)):
        if len(values) > 1:
            raise InvalidArgument(
                f"pallet supports one IPv4 pool per network: {flag} given {len(values)} times"
            )
    from pallet.engine import networks

    rec = networks.create(
        Engine(),
        ns.names[0],
        driver=ns.driver,
        subnet=(ns.subnet or [None])[0],
        gateway=(ns.gateway or [None])[0],
        ip_range=(ns.ip_range or [None])[0],
        internal=ns.internal,
        attachable=ns.attachable,
        ipv6=ns.ipv6,
        labels=_pairs(ns.label, "label"),
        options=_pairs(ns.opt, "option"),
    )
    out(rec.id + "\n")
    return 0


def ls(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")
    ns = p.parse(args)
    from pallet.engine import networks
    from pallet.engine.filters import FilterError, parse_filters

    try:
        filters = parse_filters(ns.filter, {"driver", "id", "label", "name", "scope", "type", "dangling"})
    except FilterError as e:
        raise InvalidArgument(str(e)) from None
    recs = networks.list_networks(Engine(), filters)
    if "scope" in filters:
        recs = [r for r in recs if "local" in filters["scope"]]

    def shown_id(net_id: str) -> str:
        return net_id if ns.no_trunc else net_id[:12]

    if ns.quiet:
        out("".join(shown_id(r.id) + "\n" for r in recs))
        return 0
    from pallet.cli.format import format_rows

    rows: list[dict[str, Any]] = [
        {
            "ID": shown_id(r.id),
            "Name": r.name,
            "Driver": r.driver,
            "Scope": "local",
            "IPv6": str(r.enable_ipv6).lower(),
            "Internal": str(r.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in r.labels.items()),
            "CreatedAt": r.created,
        }
        for r in recs
    ]
    table = [
        ("NETWORK ID", "{{.ID}}"),
        ("NAME", "{{.Name}}"),
        ("DRIVER", "{{.Driver}}"),
        ("SCOPE", "{{.Scope}}"),
    ]
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
               "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}  # fmt: skip
    out(format_rows(ns.format, rows, table, headers))
    return 0


def inspect(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] NETWORK [NETWORK...]")
    p.add_argument("-f", "--format")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] NETWORK [NETWORK...]")
    from pallet.cli.images import print_inspect
    from pallet.engine import networks

    engine = Engine()
    return print_inspect([lambda n=n: networks.inspect(engine, n) for n in ns.names], ns.format)


def rm(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] NETWORK [NETWORK...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="*")
    ns = p.parse(args)
    requires(ns.names, prog, "[OPTIONS] NETWORK [NETWORK...]")
    from pallet.engine import networks
    from pallet.errors import NotFound

    engine = Engine()
    quiet = (NotFound,) if ns.force else ()
    return for_each(ns.names, lambda name: networks.remove(engine, name), quiet_errors=quiet)


def prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    ns = p.parse(args)
    from pallet.engine import networks
    from pallet.engine.filters import FilterError, parse_filters

    try:
        filters = parse_filters(ns.filter, {"label", "until"})
    except FilterError as e:
        raise InvalidArgument(str(e)) from None
    if "until" in filters:
        raise InvalidArgument("the until filter is not supported by pallet network prune")
    if not ns.force:
        out(
            "WARNING! This will remove all custom networks not used by at least one container.\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    names = networks.prune(Engine(), filters)
    if names:
        out("Deleted Networks:\n" + "".join(n + "\n" for n in names))
    return 0


def connect(prog: str, args: list[str]) -> int:
    usage = "[OPTIONS] NETWORK CONTAINER"
    p = Parser(prog, usage)
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--driver-opt", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(args)
    _exactly(ns.args, 2, prog, usage)
    if ns.ip6 or ns.link or ns.driver_opt:
        raise InvalidArgument("--ip6, --link and --driver-opt are not supported by pallet")
    from pallet.engine import networks

    networks.connect(Engine(), ns.args[0], ns.args[1], ip=ns.ip, aliases=ns.alias)
    return 0


def disconnect(prog: str, args: list[str]) -> int:
    usage = "[OPTIONS] NETWORK CONTAINER"
    p = Parser(prog, usage)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(args)
    _exactly(ns.args, 2, prog, usage)
    from pallet.engine import networks

    networks.disconnect(Engine(), ns.args[0], ns.args[1], force=ns.force)
    return 0
