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
