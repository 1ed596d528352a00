"""`version` and `info`."""

from __future__ import annotations

import json
import platform

from pallet.cli.args import Parser, out

API_VERSION = "1.45"
MIN_API_VERSION = "1.41"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pallet")
    except PackageNotFoundError:
        return "0.0.0"


def version(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-f", "--format")
    p.add_argument("--short", action="store_true")
    ns = p.parse(args)
    v = _version()
    if ns.short:
        out(f"pallet version {v}\n")
        return 0
    data = {"Client": {"Version": v, "ApiVersion": API_VERSION, "Os": "linux", "Arch": platform.machine()},
            "Server": {"Version": v, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                       "Os": "linux", "Arch": platform.machine(), "KernelVersion": platform.release()}}
    if ns.format:
        from pallet.cli.format import render

        out(render(ns.format, data) + "\n")
        return 0
    out(f"Client:\n Version:           {v}\n API version:       {API_VERSION}\n"
        f" OS/Arch:           linux/{platform.machine()}\n\nServer:\n Engine:\n  Version:          {v}\n"
        f"  API version:      {API_VERSION} (minimum version {MIN_API_VERSION})\n")
    return 0


def info(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-f", "--format")
    ns = p.parse(args)
    from pallet.engine.core import Engine
    from pallet.state import containers as records

    engine = Engine()
    recs = records.all_records(engine.conn)
    running = sum(1 for r in recs if r.state.get("Running"))
    data = {"Containers": len(recs), "ContainersRunning": running, "ContainersPaused": 0,
            "ContainersStopped": len(recs) - running, "Images": len(engine.images.all()),
            "Driver": "overlay2", "DockerRootDir": str(engine.paths.root), "ServerVersion": _version(),
            "OperatingSystem": platform.platform(), "KernelVersion": platform.release(),
            "Architecture": platform.machine(), "DefaultRuntime": "pallet",
            "Runtimes": {"pallet": {}, "crun": {"path": "crun"}, "runc": {"path": "runc"}}}
    if ns.format:
        from pallet.cli.format import render

        out(render(ns.format, data) + "\n")
    else:
        out(json.dumps(data, indent=2) + "\n")
    return 0


def df(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--format")
    ns = p.parse(args)
    from pallet.cli import system_df
    from pallet.engine.core import Engine
    from pallet.engine.system import disk_usage

    engine = Engine()
    usage = disk_usage(engine)
    out(system_df.render(engine, usage, ns.format or "", verbose=ns.verbose))
    return 0


PRUNE_WARNING = "WARNING! This will remove:\n{items}\nAre you sure you want to continue? [y/N] "


def prune(prog: str, args: list[str]) -> int:
    p = Parser(prog, "[OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    ns = p.parse(args)
    import sys

    from pallet.errors import PalletError

    if ns.filter:
        raise PalletError("--filter is not supported by pallet system prune yet")
    if not ns.force:
        items = ["all stopped containers", "all networks not used by at least one container"]
        if ns.volumes:
            items.append("all anonymous volumes not used by at least one container")
        items.append("all images without at least one container associated to them" if ns.all
                     else "all dangling images")
        items.append("all build cache" if ns.all else "unused build cache")
        out(PRUNE_WARNING.format(items="".join(f"  - {item}\n" for item in items)))
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    from pallet.cli.units import human_size
    from pallet.engine.core import Engine
    from pallet.engine.system import prune as prune_all

    report = prune_all(Engine(), all_images=ns.all, volumes=ns.volumes)
    sections = [("Deleted Containers:", report.containers), ("Deleted Networks:", report.networks),
                ("Deleted Volumes:", report.volumes),
                ("Deleted Images:", report.image_lines), ("Deleted build cache objects:", report.build_cache)]
    for title, lines in sections:
        if lines:
            out(title + "\n" + "".join(line + "\n" for line in lines) + "\n")
    out(f"Total reclaimed space: {human_size(report.reclaimed, 4)}\n")
    return 0
