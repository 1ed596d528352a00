"""`top`: the container's processes as the host's ps shows them, as dockerd's ContainerTop does
(run `ps ARGS -q PIDS`, keep the rows whose PID belongs to the container's cgroup)."""

from __future__ import annotations

import subprocess
from typing import Any

from pallet.engine.containers import lookup
from pallet.engine.core import Engine
from pallet.errors import Conflict, PalletError


def container_pids(engine: Engine, ref: str) -> tuple[str, list[int]]:
    from pallet.engine.lifecycle import refresh
    from pallet.engine.stats import cgroups_path
    from pallet.runtime import cgroups

    rec = refresh(engine, lookup(engine, ref))
    if not rec.state.get("Running"):
        raise Conflict(f"container {rec.id} is not running")
    pids = cgroups.container_pids(cgroups_path(rec))
    if not pids and int(rec.state.get("Pid") or 0) > 0:
        pids = [int(rec.state["Pid"])]
    return rec.id, pids


def top(engine: Engine, ref: str, ps_args: str = "-ef") -> dict[str, Any]:
    """The Engine API's ContainerTopOKBody: {"Titles": [...], "Processes": [[...], ...]}."""
    _, pids = container_pids(engine, ref)
    args = (ps_args or "-ef").split()
    pid_arg = "-q" + ",".join(str(p) for p in pids)
    proc = subprocess.run(["ps", *args, pid_arg], capture_output=True)
    if proc.returncode != 0:
        # Some ps options (such as f) can't be combined with -q: retry without it.
        proc = subprocess.run(["ps", *args], capture_output=True)
        if proc.returncode != 0:
            first = proc.stderr.decode(errors="replace").split("\n", 1)[0]
            raise PalletError(f"ps: {first or f'exit status {proc.returncode}'}")
    return parse_ps(proc.stdout.decode(errors="replace"), set(pids))


def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """dockerd's parsePSOutput: rows of the container's pids (and their thread lines, PID "-"),
    the last column keeping its spaces."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise PalletError("Couldn't find PID field in ps output")
    pid_index = titles.index("PID")
    processes: list[list[str]] = []
    in_container = False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if fields[pid_index] == "-":
            if in_container:
                processes.append(_row(fields, len(titles)))
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise PalletError(f"Unexpected pid '{fields[pid_index]}'") from None
        in_container = pid in pids
        if in_container:
            processes.append(_row(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _row(fields: list[str], ncols: int) -> list[str]:
    return [*fields[: ncols - 1], " ".join(fields[ncols - 1 :])]
