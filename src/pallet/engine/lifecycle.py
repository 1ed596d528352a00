"""Starting, stopping and watching containers: the engine hands a bundle to a monitor and
reads back what the monitor recorded."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pallet.engine.containers import lookup, now_rfc3339
from pallet.engine.core import Engine
from pallet.errors import PalletError
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
    """Mount the rootfs, write /etc files and config.json; return the monitor's spec."""
    from pallet.runtime import rootfs, users
    from pallet.runtime.monitor import MonitorSpec
    from pallet.runtime.spec import default_spec

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
        user = users.resolve(target, cfg.get("User") or "", hc.get("GroupAdd"))
        workdir = cfg.get("WorkingDir") or "/"
        rootfs.make_dir_in(target, workdir, user.uid, user.gid)
        etc_mounts = _write_etc_files(cdir, cfg)
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={user.home}")
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        spec = default_spec(
            args=args,
            env=env,
            cwd=workdir,
            hostname=cfg.get("Hostname") or rec.id[:12],
            domainname=cfg.get("Domainname") or "",
            user=(user.uid, user.gid, user.groups),
            terminal=bool(cfg.get("Tty")),
            readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            cgroups_path=f"/pallet/{rec.id}",
            extra_mounts=etc_mounts,
        )
        _write_atomic(cdir / "config.json", json.dumps(spec).encode())
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


def _write_etc_files(cdir: Path, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    hostname = cfg.get("Hostname") or ""
    _write_atomic(cdir / "hostname", f"{hostname}\n".encode())
    hosts = (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    _write_atomic(cdir / "hosts", hosts.encode())
    if not (cdir / "resolv.conf").exists():
        _write_atomic(cdir / "resolv.conf", _resolv_conf())
    opts = ["rbind", "rprivate"]
    return [
        {"destination": f"/etc/{n}", "type": "bind", "source": str(cdir / n), "options": list(opts)}
        for n in ("resolv.conf", "hostname", "hosts")
    ]


def _resolv_conf() -> bytes:
    # Without a network of its own the container gets the host's search/options but no
    # nameserver that points at the host's loopback resolver (unreachable from its netns).
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    kept = [
        ln
        for ln in lines
        if ln.strip()
        and not ln.startswith("#")
        and not (ln.startswith("nameserver") and ("127." in ln or "::1" in ln))
    ]
    return ("\n".join(kept) + "\n").encode() if kept else b""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


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
