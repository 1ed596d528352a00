"""`ps`: the container list, with docker's columns, filters and Go-template formats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pallet.cli.args import Parser, out
from pallet.engine.core import Engine
from pallet.errors import InvalidArgument, PalletError

if TYPE_CHECKING:
    from pallet.engine.container_list import Listed

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
    "Label": "LABEL",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Networks": "NETWORKS",
    "Size": "SIZE",
    "State": "STATE",
}


def parse_ps_filters(values: list[str]) -> dict[str, list[str]]:
    from pallet.engine.container_list import FILTERS
    from pallet.engine.filters import FilterError, parse_filters

    try:
        return parse_filters(values, FILTERS)
    except FilterError as e:
        message = str(e)
        if message.startswith("invalid argument"):
            raise InvalidArgument(message) from None  # a malformed flag: docker's CLI exits 125
        raise PalletError(message) from None


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
    from pallet.engine import container_list

    filters = parse_ps_filters(ns.filter)
    fmt = ns.format or ""
    custom = bool(fmt) and fmt != "table"
    # docker measures sizes only when shown: -s, or a custom format that uses .Size
    size = ns.size or (custom and not ns.quiet and ".Size" in fmt)
    limit = 1 if ns.latest else ns.last
    engine = Engine()
    listed = container_list.list_containers(
        engine, all_containers=ns.all, limit=limit, filters=filters, size=size
    )
    if ns.quiet and not custom:
        out("".join((item.record.short_id if not ns.no_trunc else item.record.id) + "\n" for item in listed))
        return 0
    out(render_rows(engine, listed, fmt, trunc=not ns.no_trunc, size_column=ns.size))
    return 0


def render_rows(engine: Engine, listed: Sequence[Listed], fmt: str, *, trunc: bool, size_column: bool) -> str:
    from pallet.cli.format import TemplateError, format_rows
    from pallet.cli.ps_rows import ps_row
    from pallet.engine import inspect_shape
    from pallet.engine.inspect import port_map

    rows = []
    for item in listed:
        rec = item.record
        networks = inspect_shape.network_settings(
            rec.config["HostConfig"].get("NetworkMode") or "none", rec.config.get("NetworkSettings") or {}, {}
        )["Networks"]
        rows.append(ps_row(item, trunc=trunc, port_map=port_map(rec), networks=list(networks)))
    table = PS_TABLE + ([("SIZE", "{{.Size}}")] if size_column else [])
    try:
        return format_rows(fmt or None, rows, table, PS_HEADERS)  # type: ignore[arg-type]
    except TemplateError as e:
        raise PalletError(f"template parsing error: {e}") from None
