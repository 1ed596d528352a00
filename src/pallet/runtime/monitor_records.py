"""The monitor's reads and writes of the state database, each done in a short-lived forked
child: sqlite3 and the state modules (with pathlib) would add about 3 MB to every long-lived
monitor, while a fork of the small monitor costs well under a millisecond. The imports cost the
same in the child as they would in the monitor, and only on the paths that touch the database
(an exit, a restart, a health result).

Every operation takes the monitor's spec and JSON-able arguments and returns a JSON-able result.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any


class RecordError(Exception):
    pass


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) in a forked child and return its result (through a pipe, as JSON)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            data = json.dumps({"result": fn(*args)}).encode()
            while data:
                data = data[os.write(w, data) :]
            code = 0
        except BaseException:  # noqa: BLE001 - reported to monitor.log and as a RecordError
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    os.waitpid(pid, 0)
    if not chunks:
        raise RecordError(f"{getattr(fn, '__name__', fn)} failed (see monitor.log)")
    return json.loads(b"".join(chunks))["result"]


def _db(spec: Mapping[str, Any]) -> Any:
    from pallet.state import db

    return db.connect(spec["db_path"])


def _now() -> str:
    from pallet.runtime.jsonlog import rfc3339_nano

    return rfc3339_nano(time.time_ns())


# ---- operations (run in the child) ---------------------------------------------------------------


def record_exit(spec: Mapping[str, Any], exit_info: dict[str, Any], health: dict[str, Any] | None) -> str:
    """Decide, as docker's restart manager, whether this exit restarts the container. If it does,
    record "restarting" (and the restart count); if not, end it (`record_end`). One child for the
    whole exit keeps `run --rm` quick. Returns "restart", "stop" or "gone"."""
    from pallet.runtime import restart
    from pallet.runtime.health import stopped
    from pallet.state import containers

    conn = _db(spec)
    rec = containers.get(conn, spec["container_id"])
    if rec is None:
        return "gone"  # removed under us (rm -f)
    top = rec.config
    count = int(top.get("RestartCount") or 0)
    go_on = restart.should_restart(
        rec.config["HostConfig"].get("RestartPolicy"),
        int(exit_info["ExitCode"]),
        restart_count=count,
        manually_stopped=bool(top.get("HasBeenManuallyStopped")),
        cancelled=bool(top.get("ExitOnNext")),
        auto_remove=bool(spec["auto_remove"]),
    )
    if not go_on:
        record_end(spec, exit_info, "", conn)
        return "stop"
    state = {
        "Status": "restarting",
        "Running": True,
        "Restarting": True,
        "Paused": False,
        "Pid": 0,
        **exit_info,
    }
    if rec.state.get("Health") is not None or health is not None:
        state["Health"] = stopped(rec.state.get("Health") or health)
    containers.update(conn, spec["container_id"], state=state, top={"RestartCount": count + 1})
    return "restart"


def record_end(spec: Mapping[str, Any], exit_info: dict[str, Any], error: str, conn: Any = None) -> None:
    """The container is down for good: no more attach clients (the socket goes before the record,
    so that a new start's socket is never the one removed), the rootfs unmounted, then recorded
    exited, or removed (--rm)."""
    from pathlib import Path

    from pallet.runtime import rootfs
    from pallet.runtime.health import stopped
    from pallet.state import containers

    try:
        os.unlink(os.path.join(spec["run_dir"], "attach.sock"))
    except FileNotFoundError:
        pass
    try:
        rootfs.unmount(Path(spec["rootfs"]))
    except OSError as e:
        import sys

        print(f"unmounting the rootfs: {e}", file=sys.stderr)
    conn = conn or _db(spec)
    cid = spec["container_id"]
    _release(spec, conn)
    if spec["auto_remove"]:
        import shutil

        containers.delete(conn, cid)
        shutil.rmtree(spec["container_dir"], ignore_errors=True)
        shutil.rmtree(spec["run_dir"], ignore_errors=True)
        return
    state: dict[str, Any] = {
        "Status": "exited",
        "Running": False,
        "Paused": False,
        "Restarting": False,
        "Pid": 0,
        "Error": error,
        "FinishedAt": _now(),
        **exit_info,
    }
    rec = containers.get(conn, cid)
    if rec is not None and rec.state.get("Health") is not None:
        state["Health"] = stopped(rec.state["Health"])
    containers.update_state(conn, cid, **state)


def _release(spec: Mapping[str, Any], conn: Any) -> None:
    """The container's network and volume mounts (and with --rm its anonymous volumes), before the
    record says it stopped: see engine/container_release.py."""
    if "state_root" not in spec:
        return  # a monitor started before this existed
    from pallet.engine.container_release import release_after_exit

    root, runroot = spec["state_root"], spec["state_runroot"]
    release_after_exit(root, runroot, conn, spec["container_id"], remove_anonymous=bool(spec["auto_remove"]))


def restart_cancelled(spec: Mapping[str, Any]) -> bool:
    from pallet.state import containers

    rec = containers.get(_db(spec), spec["container_id"])
    return rec is None or bool(rec.config.get("ExitOnNext"))


def is_paused(spec: Mapping[str, Any]) -> bool:
    from pallet.state import containers

    rec = containers.get(_db(spec), spec["container_id"])
    return bool(rec and rec.state.get("Paused"))


def record_health(spec: Mapping[str, Any], health: dict[str, Any]) -> None:
    from pallet.state import containers

    containers.update_state(_db(spec), spec["container_id"], Health=health)
