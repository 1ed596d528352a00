"""pause / unpause: freeze every process of a container with its cgroup's freezer.

cgroup v1: freezer.state FROZEN / THAWED (FREEZING while the kernel works on it); cgroup v2:
cgroup.freeze 1 / 0, done when cgroup.events says "frozen 1". The same cgroup serves all three
runtimes (their cgroupsPath is ours), and runc/crun read the freezer to report "paused" too.
"""

from __future__ import annotations

import os
import time

from pallet.engine.containers import lookup
from pallet.engine.core import Engine
from pallet.errors import Conflict, PalletError
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord

FREEZE_TIMEOUT = 5.0


def pause(engine: Engine, ref: str) -> None:
    from pallet.engine.lifecycle import container_lock, refresh

    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        st = rec.state
        if not st.get("Running"):
            raise Conflict(f"container {rec.id} is not running")
        if st.get("Paused"):
            raise Conflict(f"container {rec.id} is already paused")
        if st.get("Restarting"):
            raise Conflict(f"Container {rec.id} is restarting, wait until the container is running")
        try:
            _freeze(freezer(engine, rec), True)
        except OSError as e:
            raise PalletError(f"cannot pause container {rec.id}: {e.strerror or e}") from None
        fields = {"Paused": True, "Status": "paused"}
        if st.get("Health"):
            # docker stops probing a paused container and calls it unhealthy meanwhile.
            fields["Health"] = {**st["Health"], "Status": "unhealthy"}
        records.update_state(engine.conn, rec.id, **fields)


def unpause(engine: Engine, ref: str) -> None:
    from pallet.engine.lifecycle import container_lock, refresh

    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        if not rec.state.get("Paused"):
            raise Conflict(f"Container {rec.id} is not paused")
        thaw(engine, rec)


def thaw(engine: Engine, rec: ContainerRecord) -> None:
    """Thaw the container and record it running again (also after a stop signal to a paused one)."""
    try:
        _freeze(freezer(engine, rec), False)
    except FileNotFoundError:
        pass  # the cgroup is gone with the container (a kill got there first): nothing is frozen
    except OSError as e:
        raise PalletError(f"Cannot unpause container {rec.id}: {e.strerror or e}") from None
    cur = records.get(engine.conn, rec.id)
    if cur is not None and cur.state.get("Paused"):
        records.update_state(
            engine.conn,
            rec.id,
            Paused=False,
            Status="running" if cur.state.get("Running") else cur.state.get("Status"),
        )


def freezer(engine: Engine, rec: ContainerRecord) -> tuple[int, str]:
    """(cgroup version, the container's cgroup dir holding the freezer)."""
    from pallet.engine.lifecycle import cgroups_path
    from pallet.runtime import cgroups

    path = cgroups_path(engine, rec)
    hs = cgroups.hierarchies()
    for h in hs:
        if h.version == 1 and "freezer" in h.controllers:
            return 1, cgroups.container_dir(h, path)
    for h in hs:
        if h.version == 2:
            return 2, cgroups.container_dir(h, path)
    raise PalletError("pause is not supported on this host: no freezer cgroup is mounted")


def _freeze(where: tuple[int, str], frozen: bool) -> None:
    version, path = where
    if version == 1:
        want = "FROZEN" if frozen else "THAWED"
        state_file = os.path.join(path, "freezer.state")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        tries = 0
        while True:
            if tries % 50 == 0:  # the kernel may give up on a busy task: ask again now and then
                _write(state_file, want)
            if _read(state_file) == want:
                return
            if time.monotonic() > deadline:
                if frozen:
                    _write(state_file, "THAWED")
                raise OSError(f"the freezer did not reach {want} within {FREEZE_TIMEOUT:g}s")
            tries += 1
            time.sleep(0.002)
    _write(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    events = os.path.join(path, "cgroup.events")
    while f"frozen {1 if frozen else 0}" not in _read(events).splitlines():
        if time.monotonic() > deadline:
            raise OSError(f"the cgroup did not {'freeze' if frozen else 'thaw'} within {FREEZE_TIMEOUT:g}s")
        time.sleep(0.002)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()
