"""Starting, stopping and watching containers: the engine hands a bundle to a monitor and
reads back what the monitor recorded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pallet.engine.containers import lookup, now_rfc3339
from pallet.engine.core import Engine
from pallet.errors import Conflict, PalletError
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord
from pallet.state.locks import file_lock


class StartFailed(PalletError):
    exit_code = 125


@contextmanager
def container_lock(engine: Engine, cid: str) -> Iterator[None]:
    lock_dir = engine.paths.runroot / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_dir / f"{cid}.lock"):
        yield


def _process_start_time(pid: int) -> str | None:
    from pallet.runtime.monitor import process_start_time

    return process_start_time(pid)


def _monitor_alive(engine: Engine, cid: str) -> bool:
    try:
        pid_s, start = (engine.paths.container_run(cid) / "monitor.pid").read_text().split()
    except (FileNotFoundError, ValueError):
        return False
    return _process_start_time(int(pid_s)) == start


def refresh(engine: Engine, rec: ContainerRecord) -> ContainerRecord:
    """Make State honest when the monitor is gone (killed, or the host rebooted): a container
    whose process is also gone is exited; one still running says its monitor died."""
    st = rec.state
    if not st.get("Running") or _monitor_alive(engine, rec.id):
        return rec
    pid = int(st.get("Pid") or 0)
    alive = (
        pid > 0 and _process_start_time(pid) is not None and st.get("PidStart") == _process_start_time(pid)
    )
    if alive:
        if not st.get("Error"):
            rec.state = records.update_state(engine.conn, rec.id, Error="monitor process died") or st
        return rec
    rec.state = (
        records.update_state(
            engine.conn,
            rec.id,
            Status="exited",
            Running=False,
            Paused=False,
            Restarting=False,
            Pid=0,
            ExitCode=255,
            FinishedAt=now_rfc3339(),
            Error="container monitor died",
        )
        or st
    )
    from pallet.runtime import rootfs

    try:
        rootfs.unmount(engine.paths.container_dir(rec.id) / "rootfs")
    except OSError:
        pass
    return rec


def start(engine: Engine, ref: str, attach: socket.socket | None = None) -> ContainerRecord:
    """Start a created or exited container. With `attach`, the monitor streams the container's
    output (and takes stdin) over that socket from the first byte."""
    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        if rec.state.get("Running"):
            return rec
        spec = prepare_bundle(engine, rec)
        from pallet.runtime import monitor

        engine.close()
        try:
            monitor.spawn(spec, attach)
        except monitor.StartError as e:
            _undo_start(engine, rec, str(e))
            raise StartFailed(str(e)) from None
        got = records.get(engine.conn, rec.id)
        return got or rec


def _undo_start(engine: Engine, rec: ContainerRecord, error: str) -> None:
    from pallet.runtime import rootfs

    try:
        rootfs.unmount(engine.paths.container_dir(rec.id) / "rootfs")
    except OSError:
        pass
    never_started = str(rec.state.get("StartedAt", "")).startswith("0001")
    records.update_state(
        engine.conn,
        rec.id,
        Status="created" if never_started else "exited",
        Running=False,
        Pid=0,
        ExitCode=128,
        Error=error,
    )


def prepare_bundle(engine: Engine, rec: ContainerRecord) -> Any:
    """Mount the rootfs, write the OCI bundle; return the monitor's spec."""
    from pallet.engine.bundle import write_bundle
    from pallet.runtime import rootfs
    from pallet.runtime.monitor import MonitorSpec

    cfg = rec.config["Config"]
    hc = rec.config["HostConfig"]
    cdir = engine.paths.container_dir(rec.id)
    target = cdir / "rootfs"
    chains = engine.images.get(rec.image_id).chain_ids if rec.image_id else []
    if not rootfs.is_mounted(target):
        if _use_overlay(engine):
            rootfs.mount_overlay(engine.paths.layers, chains, cdir / "upper", cdir / "work", target)
        elif not (cdir / ".copied").exists():
            rootfs.copy_layers([engine.images.layer_dir(c) for c in chains], target)
            (cdir / ".copied").touch()
    try:
        write_bundle(engine, rec, target)
    except BaseException:
        rootfs.unmount(target)
        raise
    run_dir = engine.paths.container_run(rec.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    runtime = hc.get("Runtime") or "pallet"
    return MonitorSpec(
        container_id=rec.id,
        bundle=cdir,
        runtime="builtin" if runtime == "pallet" else runtime,
        runtime_root=engine.paths.runroot / "runtimes" / runtime,
        db_path=engine.paths.db,
        log_path=cdir / f"{rec.id}-json.log",
        rootfs=target,
        auto_remove=bool(hc.get("AutoRemove")),
        open_stdin=bool(cfg.get("OpenStdin")),
        container_dir=cdir,
        run_dir=run_dir,
    )


def _use_overlay(engine: Engine) -> bool:
    if os.environ.get("PALLET_NO_OVERLAY") == "1":
        return False
    marker = engine.paths.root / ".overlay"
    if marker.exists():
        return marker.read_text() == "yes"
    from pallet.runtime import rootfs

    ok = rootfs.overlay_supported(engine.paths.tmp)
    marker.write_text("yes" if ok else "no")
    return ok


def kill_and_wait(engine: Engine, rec: ContainerRecord, timeout: float = 10.0) -> None:
    """SIGKILL the container and wait for its monitor to record the exit."""
    pid = int(rec.state.get("Pid") or 0)
    if pid > 0 and _process_start_time(pid) == rec.state.get("PidStart"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = records.get(engine.conn, rec.id)
        if cur is None or not cur.state.get("Running"):
            break
        if not _monitor_alive(engine, rec.id):
            refresh(engine, cur)
            break
        time.sleep(0.01)
    # The monitor unmounts too, but it may be gone: make sure nothing stays mounted.
    from pallet.runtime import rootfs

    rootfs.unmount(engine.paths.container_dir(rec.id) / "rootfs")


def wait_exit(engine: Engine, cid: str, poll: float = 0.05) -> dict[str, Any]:
    while True:
        rec = records.get(engine.conn, cid)
        if rec is None:
            return {"ExitCode": 0}
        rec = refresh(engine, rec)
        if not rec.state.get("Running"):
            return rec.state
        time.sleep(poll)


def remove(engine: Engine, ref: str, *, force: bool = False) -> str:
    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        if rec.state.get("Running"):
            if not force:
                raise Conflict(
                    f'cannot remove container "/{rec.name}": container is running: stop the '
                    "container before removing or force remove"
                )
            kill_and_wait(engine, rec)
        _cleanup_files(engine, rec)
        records.delete(engine.conn, rec.id)
    return ref


def _cleanup_files(engine: Engine, rec: ContainerRecord) -> None:
    from pallet.runtime import rootfs

    cdir = engine.paths.container_dir(rec.id)
    rootfs.unmount(cdir / "rootfs")
    shutil.rmtree(cdir, ignore_errors=True)
    shutil.rmtree(engine.paths.container_run(rec.id), ignore_errors=True)
