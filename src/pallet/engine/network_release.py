"""Giving a container's network back, and repairing what a crash left: the exit path and `rm` call
`release`, `start` releases what an earlier run of the same container left (`release_container`),
and `sweep_stale` frees the endpoints of containers that died without cleaning up (a monitor killed
together with its container, a host reboot, a crash mid-start), whose ports and addresses would
otherwise block the next run. See container_network.py for the wiring itself."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from pallet.state import containers as records

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    from pallet.engine.core import Engine
    from pallet.network.bridge import BridgeDriver
    from pallet.state.paths import StatePaths


def release(paths: StatePaths, conn: sqlite3.Connection, cid: str) -> None:
    """Everything the container's network holds on the host, once it stopped (the monitor's exit
    path, `rm`, a failed start): published ports, endpoints and their addresses, veth pairs, the
    namespace. Idempotent; nothing to do for host and container: modes."""
    from pallet.engine.container_network import uses_bridge

    rec = records.get(conn, cid)
    mode = str((rec.config.get("HostConfig") or {}).get("NetworkMode") or "") if rec else ""
    if rec is not None and mode != "none" and not uses_bridge(mode):
        return  # host and container: modes hold nothing of their own
    release_container(paths, conn, cid)
    if rec is not None:
        _clear_runtime_settings(conn, cid)


def release_container(
    paths: StatePaths, conn: sqlite3.Connection, cid: str, *, drv: BridgeDriver | None = None
) -> None:
    """The endpoints of `cid` and its pinned namespace, whatever the record says."""
    from pallet.network import netns

    has_endpoints = conn.execute("SELECT 1 FROM network_endpoints WHERE container_id = ?", (cid,)).fetchone()
    if has_endpoints:
        if drv is None:
            from pallet.network.bridge import BridgeDriver, DriverSettings

            drv = BridgeDriver(paths, conn, DriverSettings.from_env())
        drv.release_container(cid)
    ns_path = netns.netns_path(paths.runroot, cid)
    if ns_path.exists():
        netns.delete(ns_path)


def _clear_runtime_settings(conn: sqlite3.Connection, cid: str) -> None:
    """NetworkSettings of a stopped container: the configured networks, no addresses, no ports."""
    rec = records.get(conn, cid)
    if rec is None:
        return
    from pallet.engine.container_network import idle_endpoint

    wanted = ((rec.config.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}
    networks = {name: idle_endpoint(cfg) for name, cfg in wanted.items()}
    records.update(conn, cid, top={"NetworkSettings": {"Networks": networks}})


@contextmanager
def _try_container_lock(engine: Engine, cid: str) -> Iterator[bool]:
    """The lock `start` and `rm` hold on a container (lifecycle.container_lock), without waiting:
    False while another command is working on that container."""
    lock_dir = engine.paths.runroot / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{cid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _in_use(engine: Engine, cid: str) -> bool:
    from pallet.engine.lifecycle import refresh

    rec = records.get(engine.conn, cid)
    return rec is not None and bool(refresh(engine, rec).state.get("Running"))


def sweep_stale(engine: Engine, drv: BridgeDriver | None = None, *, skip: str = "") -> list[str]:
    """Release the endpoints of containers that are gone or no longer running (a monitor killed
    with its container, a host reboot, a crash mid-start): their ports and addresses would block
    the next run. Containers another command is working on are left alone. Returns the ids."""
    ids = [r[0] for r in engine.conn.execute("SELECT DISTINCT container_id FROM network_endpoints")]
    swept = []
    for cid in ids:
        if cid == skip or _in_use(engine, cid):
            continue
        with _try_container_lock(engine, cid) as got:
            if not got or _in_use(engine, cid):
                continue
            release_container(engine.paths, engine.conn, cid, drv=drv)
            if records.get(engine.conn, cid) is not None:
                _clear_runtime_settings(engine.conn, cid)
            swept.append(cid)
    return swept
