"""`ps`: the container list, with docker's columns, filters and Go-template formats."""

from __future__ import annotations

from pallet.cli.args import Parser, out
from pallet.engine.core import Engine

PS_TABLE = [
    ("CONTAINER ID", "{{.ID}}"),
    ("IMAGE", "{{.Image}}"),
    ("COMMAND", "{{.Command}}"),
    ("CREATED", "{{.RunningFor}}"),
    ("STATUS", "{{.Status}}"),
    ("PORTS", "{{.Ports}}"),
    ("NAMES", "{{.Names}}"),
]
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT",
    "Status": "STATUS",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "Size": "SIZE",
    "State": "STATE",
}


def ps(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    ns = p.parse(args)
    from pallet.cli.ps_rows import ps_row
    from pallet.engine import containers

    engine = Engine()
    show_all = ns.all or ns.last >= 0 or ns.latest
    recs = containers.list_containers(engine, all_containers=show_all)
    if ns.latest:
        recs = recs[:1]
    elif ns.last >= 0:
        recs = recs[: ns.last]
    if ns.quiet:
        out("".join((r.id if ns.no_trunc else r.short_id) + "\n" for r in recs))
        return 0
    from pallet.cli.format import format_rows

    rows = [ps_row(r, ns.no_trunc) for r in recs]
    out(format_rows(ns.format, rows, PS_TABLE, PS_HEADERS))
    return 0
