"""`stats` and `top`: a container's resource usage and processes, formatted as docker's CLI does."""

from __future__ import annotations

import sys
import time
from typing import Any

from pallet.cli.args import REMAINDER, Namespace, Parser, out, requires
from pallet.engine.core import Engine

SAMPLE_INTERVAL = 1.0  # seconds between the two samples a CPU % needs (dockerd's collection period)
STATS_TABLE = [
    ("CONTAINER ID", "{{.ID}}"),
    ("NAME", "{{.Name}}"),
    ("CPU %", "{{.CPUPerc}}"),
    ("MEM USAGE / LIMIT", "{{.MemUsage}}"),
    ("MEM %", "{{.MemPerc}}"),
    ("NET I/O", "{{.NetIO}}"),
    ("BLOCK I/O", "{{.BlockIO}}"),
    ("PIDS", "{{.PIDs}}"),
]
STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID"}


def _cpu_percent(doc: dict[str, Any]) -> float:
    """docker's calculateCPUPercentUnix: the container's share of the host's CPU time between samples."""
    cpu, pre = doc.get("cpu_stats") or {}, doc.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def _memory_used(mem: dict[str, Any]) -> int:
    """docker's calculateMemUsageUnixNoCache: usage less the inactive page cache."""
    usage = int(mem.get("usage") or 0)
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in stats and stats[key] < usage:
            return usage - int(stats[key])
    return usage


def stats_row(doc: dict[str, Any], container: str, no_trunc: bool) -> dict[str, Any]:
    """One row of docker's stats formatter (its fields, in its JSON key order)."""
    from pallet.cli.units import bytes_size, human_size

    mem = doc.get("memory_stats") or {}
    used, limit = _memory_used(mem), int(mem.get("limit") or 0)
    nets = (doc.get("networks") or {}).values()
    rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
    blk_read = blk_write = 0
    for entry in (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op") or "")[:1].lower()
        if op == "r":
            blk_read += int(entry.get("value") or 0)
        elif op == "w":
            blk_write += int(entry.get("value") or 0)
    name = str(doc.get("name") or "")
    return {
        "BlockIO": f"{human_size(blk_read)} / {human_size(blk_write)}",
        "CPUPerc": f"{_cpu_percent(doc):.2f}%",
        "Container": container,
        "ID": doc["id"] if no_trunc else doc["id"][:12],
        "MemPerc": f"{(used / limit * 100.0) if limit else 0.0:.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "Name": name[1:] if len(name) > 1 else "--",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}",
        "PIDs": str(int((doc.get("pids_stats") or {}).get("current") or 0)),
    }


def _targets(engine: Engine, ns: Namespace) -> list[tuple[str, Any]]:
    """(what the Container column shows, record): the named containers, else running (or all)."""
    from pallet.engine import containers
    from pallet.engine.lifecycle import refresh

    if ns.containers:
        return [(ref, refresh(engine, containers.lookup(engine, ref))) for ref in ns.containers]
    return [(r.id, r) for r in containers.list_containers(engine, all_containers=ns.all)]


def stats(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS] [CONTAINER...]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--format")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("containers", nargs="*")
    ns = p.parse(args)
    from pallet.cli.format import format_rows
    from pallet.engine import stats as engine_stats

    engine = Engine()
    if ns.no_stream:
        targets = _targets(engine, ns)
        docs = engine_stats.samples([rec for _, rec in targets], SAMPLE_INTERVAL)
        rows = [stats_row(d, shown, ns.no_trunc) for d, (shown, _) in zip(docs, targets, strict=True)]
        out(format_rows(ns.format, rows, STATS_TABLE, STATS_HEADERS))
        return 0
    previous: dict[str, dict[str, Any]] = {}
    try:
        while True:
            targets = _targets(engine, ns)
            docs = [engine_stats.sample(rec, previous.get(rec.id)) for _, rec in targets]
            previous = {rec.id: d for (_, rec), d in zip(targets, docs, strict=True)}
            rows = [stats_row(d, shown, ns.no_trunc) for d, (shown, _) in zip(docs, targets, strict=True)]
            # docker redraws the whole table each period.
            out("\033[2J\033[H" + format_rows(ns.format, rows, STATS_TABLE, STATS_HEADERS))
            sys.stdout.flush()
            time.sleep(SAMPLE_INTERVAL)
    except KeyboardInterrupt:
        return 0


def _aligned(rows: list[list[str]], minwidth: int = 20, padding: int = 3) -> str:
    """Go's tabwriter as docker's `top` sets it up (minwidth 20, padding 3): every cell but a line's
    last is padded to its column's width."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            w = max(minwidth, len(cell) + padding)
            if i == len(widths):
                widths.append(w)
            else:
                widths[i] = max(widths[i], w)
    lines = ["".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + (r[-1] if r else "") for r in rows]
    return "".join(line + "\n" for line in lines)


def top(prog: str, args: list[str]) -> int:
    p = Parser(prog, "CONTAINER [ps OPTIONS]")
    p.add_argument("container", nargs="?")
    p.add_argument("ps_args", nargs=REMAINDER)
    ns = p.parse(args)
    requires([ns.container] if ns.container else [], prog, "CONTAINER [ps OPTIONS]")
    from pallet.engine import top as engine_top

    listing = engine_top.top(Engine(), ns.container, " ".join(ns.ps_args))
    out(_aligned([listing["Titles"], *listing["Processes"]]))
    return 0
