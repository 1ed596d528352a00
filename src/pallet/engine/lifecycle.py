"""Starting, stopping, signalling and watching containers: the engine hands a bundle to a
monitor (runtime/monitor.py) and reads back what the monitor recorded.

Stopping goes the same way for every runtime (built-in, runc, crun): the signal goes straight
to the container's init (runc/crun's `kill` does just that), its monitor reaps it and records the
exit. A user stop/kill marks the record first (ExitOnNext, HasBeenManuallyStopped, in one
transaction with reading the pid) so that a monitor about to restart the container either
sees the mark or has already recorded the new pid that the stop then signals.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pallet.engine.container_rootfs import unmount_container
from pallet.engine.containers import lookup, now_rfc3339
from pallet.engine.core import Engine
from pallet.errors import Conflict, InvalidArgument, PalletError
from pallet.state import containers as records
from pallet.state.containers import ContainerRecord
from pallet.state.locks import file_lock

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from typing import Any

DEFAULT_STOP_TIMEOUT = 10
KILL_WAIT = 10.0  # after SIGKILL, how long the exit may take to be recorded


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


def monitor_pid(engine: Engine, cid: str) -> int:
    """The pid of the container's monitor if it runs, else 0."""
    from pallet.runtime.monitor import alive

    return alive(str(engine.paths.container_run(cid) / "monitor.pid"))


def _monitor_alive(engine: Engine, cid: str) -> bool:
    return monitor_pid(engine, cid) > 0


def _container_alive(state: dict[str, Any]) -> bool:
    pid = int(state.get("Pid") or 0)
    return pid > 0 and state.get("PidStart") is not None and _process_start_time(pid) == state.get("PidStart")


def refresh(engine: Engine, rec: ContainerRecord) -> ContainerRecord:
    """Make State honest when the monitor is gone (killed, or the host rebooted): a container
    whose process is also gone is exited; one still running says its monitor died."""
    st = rec.state
    if not st.get("Running") or _monitor_alive(engine, rec.id):
        return rec
    if _container_alive(st):
        if not st.get("Error"):
            rec.state = records.update_state(engine.conn, rec.id, Error="container monitor died") or st
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
    try:
        unmount_container(engine, rec.id)
    except OSError:
        pass
    _release(engine, rec.id)  # the dead monitor could not give back its network and volumes
    return rec


def _release(engine: Engine, cid: str, *, remove_anonymous: bool = False) -> None:
    from pallet.engine.container_release import release

    release(engine.paths, engine.conn, cid, remove_anonymous=remove_anonymous)


# ---- start -----------------------------------------------------------------------------------


def start(
    engine: Engine, ref: str, attach: socket.socket | None = None, warnings: list[str] | None = None
) -> ContainerRecord:
    """Start a created or exited container. With `attach`, the monitor streams the container's
    output (and takes stdin) over that socket from the first byte. The runtime's warnings (e.g.
    clamped rlimits) are appended to `warnings` when given."""
    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        if rec.state.get("Paused"):
            raise Conflict("cannot start a paused container, try unpause instead")
        if rec.state.get("Running"):
            return rec  # docker: 304 Not Modified, not an error
        from pallet.engine.monitor_spec import prepare

        spec = prepare(engine, rec)
        # docker's start resets the restart manager and the manual-stop mark.
        records.update(
            engine.conn, rec.id, top={"RestartCount": 0, "HasBeenManuallyStopped": False, "ExitOnNext": False}
        )
        from pallet.runtime import monitor

        engine.close()
        try:
            _pid, warns = monitor.spawn(spec, attach)
        except monitor.StartError as e:
            _undo_start(engine, rec, str(e))
            raise StartFailed(str(e)) from None
        if warnings is not None:
            warnings.extend(warns)
        got = records.get(engine.conn, rec.id)
        return got or rec


def _undo_start(engine: Engine, rec: ContainerRecord, error: str) -> None:
    try:
        unmount_container(engine, rec.id)
    except OSError:
        pass
    _release(engine, rec.id)
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


# ---- signals ---------------------------------------------------------------------------------


def parse_signal(value: str | int) -> int:
    """docker's signal.ParseSignal: a number, or a name with or without SIG, any case."""
    text = str(value).strip()
    if text.isdigit():
        num = int(text)
        if num == 0:
            raise InvalidArgument(f"Invalid signal: {text}")
        if num not in {s.value for s in signal.Signals} and not (signal.SIGRTMIN <= num <= signal.SIGRTMAX):
            raise InvalidArgument(f"the linux daemon does not support signal {num}")
        return num
    name = text.upper().removeprefix("SIG")
    if name.startswith("RTMIN") or name.startswith("RTMAX"):
        base, _, off = name[5:].partition("+") if "+" in name else (name[5:], "", "")
        base_num = signal.SIGRTMIN if name.startswith("RTMIN") else signal.SIGRTMAX
        try:
            delta = int(off or "0") if not base else -int(base.lstrip("-"))
        except ValueError:
            raise InvalidArgument(f"Invalid signal: {text}") from None
        return int(base_num) + delta
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        raise InvalidArgument(f"Invalid signal: {text}") from None


def _stop_signal(rec: ContainerRecord) -> int:
    value = rec.config["Config"].get("StopSignal")
    return parse_signal(value) if value else int(signal.SIGTERM)


def _signal(engine: Engine, rec: ContainerRecord, sig: int) -> ContainerRecord:
    """docker's killWithSignal: mark the record, then deliver. The stop signal and SIGKILL also
    cancel the restart policy (ExitOnNext) and thaw a paused container so it can act on it."""
    exit_on_next = sig == signal.SIGKILL or sig == _stop_signal(rec)
    top: dict[str, Any] = {"HasBeenManuallyStopped": True}
    if exit_on_next:
        top["ExitOnNext"] = True
    cur = records.update(engine.conn, rec.id, top=top) or rec
    st = cur.state
    if st.get("Restarting"):
        _wake_monitor(engine, rec.id)  # it waits out a back-off: let it see the cancel now
        return cur
    if _container_alive(st):
        try:
            os.kill(int(st["Pid"]), sig)
        except ProcessLookupError:
            pass
    if exit_on_next and st.get("Paused"):
        from pallet.engine.pause import thaw

        thaw(engine, cur)
    return cur


def _wake_monitor(engine: Engine, cid: str) -> None:
    pid = monitor_pid(engine, cid)
    if pid:
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass


def _wait_stopped(engine: Engine, cid: str, timeout: float | None) -> bool:
    """Poll until the container is no longer running (or is gone); False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = records.get(engine.conn, cid)
        if rec is None or not refresh(engine, rec).state.get("Running"):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def kill(engine: Engine, ref: str, sig: str | int = "KILL") -> None:
    """docker kill: any signal; SIGKILL also waits for the container to be gone."""
    try:
        signum = parse_signal(sig)
        rec = refresh(engine, lookup(engine, ref))
        if not rec.state.get("Running"):
            raise Conflict(f"container {rec.id} is not running")
        _signal(engine, rec, signum)
        if signum == signal.SIGKILL and not _wait_stopped(engine, rec.id, KILL_WAIT):
            raise PalletError("tried to kill container, but did not receive an exit event")
    except PalletError as e:
        raise type(e)(f"cannot kill container: {ref}: {e}") from None


def stop(engine: Engine, ref: str, *, sig: str | None = None, timeout: int | None = None) -> None:
    """docker stop: the stop signal, `timeout` seconds (Config.StopTimeout, default 10; -1 waits
    forever), then SIGKILL. Stopping a stopped container is not an error."""
    rec = refresh(engine, lookup(engine, ref))
    if not rec.state.get("Running"):
        return
    signum = parse_signal(sig) if sig else _stop_signal(rec)
    if timeout is None:
        configured = rec.config["Config"].get("StopTimeout")
        timeout = DEFAULT_STOP_TIMEOUT if configured is None else int(configured)
    _signal(engine, rec, signum)
    if _wait_stopped(engine, rec.id, None if timeout < 0 else float(timeout)):
        return
    _signal(engine, rec, int(signal.SIGKILL))
    if not _wait_stopped(engine, rec.id, KILL_WAIT):
        raise PalletError(
            f"cannot stop container: {ref}: tried to kill container, but did not receive an exit event"
        )


def restart(engine: Engine, ref: str, *, sig: str | None = None, timeout: int | None = None) -> None:
    stop(engine, ref, sig=sig, timeout=timeout)
    start(engine, ref)


def wait_exit(engine: Engine, cid: str, poll: float = 0.05) -> dict[str, Any]:
    """Block until the container's next exit (docker's wait): it stops for good, or exits and
    restarts under its policy. Returns State at that point (the last known if it was removed).

    A running container's monitor tells its exit (EXIT frame) to an attached client that asks for
    no output: exact even for a --rm container whose record is gone right after. Without a
    monitor to ask, the record is polled."""
    rec = records.get(engine.conn, cid)
    if rec is not None and refresh(engine, rec).state.get("Running"):
        told = _exit_from_monitor(engine, cid)
        if told is not None:
            cur = records.get(engine.conn, cid)
            return {**(cur.state if cur else rec.state), **told}
    last: dict[str, Any] = {"ExitCode": 0}
    first_finish: str | None = None
    while True:
        rec = records.get(engine.conn, cid)
        if rec is None:
            return last
        rec = refresh(engine, rec)
        last = rec.state
        if first_finish is None:
            first_finish = str(last.get("FinishedAt"))
        if not last.get("Running"):
            return last
        if last.get("Restarting") and str(last.get("FinishedAt")) != first_finish:
            return last
        time.sleep(poll)


def _exit_from_monitor(engine: Engine, cid: str) -> dict[str, Any] | None:
    """The EXIT frame's payload of the container's next exit; None if its monitor can't be asked."""
    from pallet.runtime import stream, unixsock

    try:
        sock = unixsock.connect(str(engine.paths.container_run(cid)), "attach.sock")
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(stream.pack_json(stream.OPEN, {"Stdin": False, "Stdout": False, "Stderr": False}))
            while (frame := stream.recv_frame(sock)) is not None:
                if frame[0] == stream.EXIT:
                    told: dict[str, Any] = json.loads(frame[1])
                    return told
        except (OSError, ValueError):
            pass
    return None


# ---- attach ----------------------------------------------------------------------------------


def attach(engine: Engine, ref: str) -> socket.socket:
    """A connection to the container's monitor (runtime/stream.py protocol; send OPEN first)."""
    rec = refresh(engine, lookup(engine, ref))
    _check_attachable(rec, ref)
    from pallet.runtime import unixsock

    try:
        return unixsock.connect(str(engine.paths.container_run(rec.id)), "attach.sock")
    except (FileNotFoundError, ConnectionRefusedError):
        cur = records.get(engine.conn, rec.id)
        if cur is not None:
            _check_attachable(refresh(engine, cur), ref)
        raise PalletError(f"cannot attach to container {ref}: its monitor is not running") from None


def _check_attachable(rec: ContainerRecord, ref: str) -> None:
    st = rec.state
    if not st.get("Running"):
        raise Conflict("You cannot attach to a stopped container, start it first")
    if st.get("Paused"):
        raise Conflict("You cannot attach to a paused container, unpause it first")
    if st.get("Restarting"):
        raise Conflict(f"container {ref} is restarting, wait until the container is running")


# ---- rename, remove --------------------------------------------------------------------------


def rename(engine: Engine, ref: str, new_name: str) -> None:
    import re

    from pallet.state.db import IntegrityError

    old, new = ref.strip(), new_name.strip()
    if not old.lstrip("/") or not new.lstrip("/"):
        raise InvalidArgument("Neither old nor new names may be empty")
    if not re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", new):
        raise InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    new = new.lstrip("/")
    rec = lookup(engine, old)
    if rec.name == new:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    try:
        records.rename(engine.conn, rec.id, new)
    except IntegrityError:
        other = records.find(engine.conn, new)
        owner = other[0].id if other else "?"
        raise Conflict(
            f'Error when allocating new name: Conflict. The container name "/{new}" is already in use '
            f'by container "{owner}". You have to remove (or rename) that container to be able to reuse '
            "that name."
        ) from None


def remove(engine: Engine, ref: str, *, force: bool = False, volumes: bool = False) -> str:
    """docker rm: with `force` a running container is killed first; with `volumes` (-v) its
    anonymous volumes go too."""
    rec = lookup(engine, ref)
    with container_lock(engine, rec.id):
        rec = refresh(engine, rec)
        if rec.state.get("Running"):
            if not force:
                why = (
                    "container is paused and must be unpaused first"
                    if rec.state.get("Paused")
                    else f"container is {rec.state.get('Status') or 'running'}: stop the container before "
                    "removing or force remove"
                )
                raise Conflict(f'cannot remove container "/{rec.name}": {why}')
            _signal(engine, rec, int(signal.SIGKILL))
            if not _wait_stopped(engine, rec.id, KILL_WAIT):
                raise PalletError(f'cannot remove container "/{rec.name}": could not kill container')
        _cleanup(engine, rec, remove_anonymous=volumes)
        records.delete(engine.conn, rec.id)
    return ref


def kill_and_wait(engine: Engine, rec: ContainerRecord, timeout: float = KILL_WAIT) -> None:
    """SIGKILL the container (cancelling its restart policy) and wait for the exit to be
    recorded; then make sure nothing of it stays mounted."""
    if refresh(engine, rec).state.get("Running"):
        _signal(engine, rec, int(signal.SIGKILL))
        _wait_stopped(engine, rec.id, timeout)
    unmount_container(engine, rec.id)


def _cleanup(engine: Engine, rec: ContainerRecord, *, remove_anonymous: bool = False) -> None:
    """Everything a container leaves on the host: the runtime's state, its cgroups (and any
    process still in them: a monitor that died leaves those), its network and volume mounts, the
    rootfs mount, its files."""
    import shutil

    from pallet.runtime import cgroups

    _release(engine, rec.id, remove_anonymous=remove_anonymous)

    cdir = engine.paths.container_dir(rec.id)
    runtime = rec.config["HostConfig"].get("Runtime") or "pallet"
    if runtime != "pallet" and shutil.which(runtime):
        from pallet.runtime import oci_cli

        oci = oci_cli.OciRuntime(runtime, engine.paths.runroot / "runtimes" / runtime)
        if (oci.root / rec.id).exists():
            try:
                oci.delete(cdir, rec.id)
            except (OSError, RuntimeError) as e:
                print(f"pallet: warning: {runtime} delete {rec.id[:12]}: {e}", file=sys.stderr)
    cgroups.remove(cgroups_path(engine, rec))
    unmount_container(engine, rec.id)
    shutil.rmtree(cdir, ignore_errors=True)
    shutil.rmtree(engine.paths.container_run(rec.id), ignore_errors=True)


def cgroups_path(engine: Engine, rec: ContainerRecord) -> str:
    """The container's cgroupsPath as its bundle says (the engine's default otherwise)."""
    try:
        spec = json.loads((engine.paths.container_dir(rec.id) / "config.json").read_bytes())
        return str(spec["linux"]["cgroupsPath"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"/pallet/{rec.id}"
