"""Launching a container's monitor: the small process, detached from whoever started it, that
owns the container's stdio, writes its json-file log, serves attached clients, applies the
restart policy, runs the healthcheck and records how the container ended.

How it comes to be (`spawn`, called by the engine with the database closed):

  CLI ──fork──> M0 (setsid) ──fork──> M: writes monitor.pid, listens on attach.sock,
                                         forks the start child C, then execs a lean
                                         interpreter (python -I -S) running monitor_process
                                         C: creates and starts the container, tells the CLI
                                         {"pid": N} (its status pipe) and M (a socket), exits

The CLI waits only for C's word, so `run` does not pay for the new interpreter's start-up, while
the long-lived monitor carries none of the CLI's imports (about 11 MB instead of 18 MB). The
container's init, orphaned when C exits, is re-parented to M, a child subreaper (that flag
survives the exec).

The spec handed over is a JSON-able dict (see `lifecycle.monitor_spec`); the monitor itself is
runtime/monitor_process.py. Clients speak the frame protocol of runtime/stream.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    import socket
    from typing import Any, NoReturn

# argv: src dir, the fd the JSON payload comes on, then the container id (for `ps` readers).
_BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    "from pallet.runtime.monitor_process import main;main(int(sys.argv[2]))"
)


class StartError(Exception):
    pass


def spawn(spec: Mapping[str, Any], attach: socket.socket | None) -> tuple[int, list[str]]:
    """Start the monitor and the container; return (the container's host pid, the runtime's
    warnings) once it runs. Raises StartError with the runtime's message if it could not start."""
    status_r, status_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(status_r)
            os.setsid()
            if os.fork() == 0:
                _become_monitor(spec, attach.fileno() if attach else -1, status_w)
        finally:
            os._exit(0)
    os.close(status_w)
    os.waitpid(child, 0)
    with os.fdopen(status_r, "rb") as f:
        raw = f.read()
    try:
        msg = json.loads(raw) if raw else {"error": "monitor died before starting the container"}
    except ValueError:
        msg = {"error": raw.decode(errors="replace").strip()}
    if "error" in msg:
        raise StartError(msg["error"])
    return int(msg["pid"]), list(msg.get("warnings") or [])


def _become_monitor(spec: Mapping[str, Any], attach_fd: int, status_w: int) -> NoReturn:
    try:
        os.chdir("/")  # never pin a mount the CLI happened to be in
        _close_inherited({status_w, attach_fd})
        _detach_stdio(os.path.join(spec["container_dir"], "monitor.log"))
        from pallet.runtime import container_start, linux, unixsock

        linux.set_child_subreaper()
        write_pid_file(os.path.join(spec["run_dir"], "monitor.pid"), os.getpid())
        # Listen before anyone learns the container runs: `attach` right after `run -d` works.
        listener = unixsock.listen(spec["run_dir"], "attach.sock")
        start_child, stdio, report = container_start.launch(spec, status_w)
        os.close(status_w)
        fds = {
            **stdio.monitor_fds(),
            "listener": listener.detach(),
            "attach": attach_fd,
            "report": report.detach(),
        }
        for fd in fds.values():
            if fd >= 0:
                os.set_inheritable(fd, True)
        payload = json.dumps({"spec": dict(spec), "fds": fds, "start_child": start_child}).encode()
        r, w = os.pipe()  # a pipe holds 64 KiB: the payload (about 2 KiB) never blocks here
        os.write(w, payload)
        os.close(w)
        os.set_inheritable(r, True)
        import pallet

        src = os.path.dirname(os.path.dirname(os.path.abspath(pallet.__file__)))
        argv = [sys.executable, "-I", "-S", "-c", _BOOT, src, str(r), "monitor", spec["container_id"]]
        os.execv(sys.executable, argv)
    except BaseException as e:  # noqa: BLE001 - the monitor must report, never raise into the CLI
        try:
            os.write(status_w, json.dumps({"error": f"container monitor: {e}"}).encode())
        except OSError:
            pass
        import traceback

        traceback.print_exc()
    os._exit(1)


def _close_inherited(keep: set[int]) -> None:
    """Forked from the CLI without exec: drop every descriptor it had open (its lock files above
    all, which would otherwise stay locked for the container's whole life)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _detach_stdio(log: str) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    # Ignored, not handled: that survives the exec, so the monitor is never killed by a terminal's
    # hang-up or by a `stop` that wakes it (SIGUSR2) before its handlers are in place.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live process from a later one reusing its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None  # a zombie has finished: it only waits for its parent to reap it
    return fields[19]


def write_pid_file(path: str, pid: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid} {process_start_time(pid)}\n")
    os.rename(tmp, path)


def read_pid_file(path: str) -> tuple[int, str] | None:
    try:
        with open(path) as f:
            pid_s, start = f.read().split()
        return int(pid_s), start
    except (OSError, ValueError):
        return None


def alive(path: str) -> int:
    """The pid of the process a pid file names if it still runs (same start time), else 0."""
    got = read_pid_file(path)
    if got is None or process_start_time(got[0]) != got[1]:
        return 0
    return got[0]
