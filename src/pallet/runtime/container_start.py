"""Starting one run of a container, for the monitor: the stdio it gets, and a short-lived child
that drives the runtime.

The monitor forks that child for every start (the first one and each restart). The child loads
the runtime (the built-in one, or the runc/crun driver), creates the container with the stdio
prepared here, records it as running, starts it, reports {"pid": N} and exits. With the built-in
runtime it does the runtime's namespace stage itself (it is single-threaded and disposable: it ends
in the container's net/uts/ipc namespaces, and must fork nothing more), and it opens the database
while the container's init sets itself up, so that only the "running" write lies between the init
being ready and its start. The container's
init, orphaned when the child exits, is re-parented to the monitor (a child subreaper), which
waits for it. All the runtime's imports (ctypes, seccomp, ...) thereby stay out of the
long-lived monitor.

The report goes over a SOCK_SEQPACKET socket pair: one message {"pid": N} or {"error": "..."} or
{"cancelled": true} (a user stop came first); for a TTY container the pty master the runtime
created inside the container comes with the message (SCM_RIGHTS). On the first start the child also
writes {"pid": N, "warnings": [...]} or {"error": ...} to the CLI's status pipe.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn


class Stdio:
    """The container's stdio for one run: the monitor's ends and the container's ends."""

    __slots__ = ("out_r", "err_r", "stdin_w", "master", "child_fds")

    def __init__(self) -> None:
        self.out_r = -1  # container stdout (non-TTY)
        self.err_r = -1  # container stderr (non-TTY)
        self.stdin_w = -1  # container stdin (non-TTY with OpenStdin)
        self.master = -1  # pty master (TTY; -1 until the runtime hands it over, with the report)
        self.child_fds: dict[str, int] = {}  # the container's ends, for the start child

    def monitor_fds(self) -> dict[str, int]:
        return {"out_r": self.out_r, "err_r": self.err_r, "stdin_w": self.stdin_w, "master": self.master}


def make_stdio(spec: Mapping[str, Any]) -> Stdio:
    s = Stdio()
    if spec["tty"]:
        return s  # the runtime creates the pty inside the container
    s.out_r, out_w = os.pipe2(os.O_CLOEXEC)
    s.err_r, err_w = os.pipe2(os.O_CLOEXEC)
    s.child_fds = {"stdout": out_w, "stderr": err_w}
    if spec["open_stdin"]:
        in_r, s.stdin_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(s.stdin_w, False)
        s.child_fds["stdin"] = in_r
    return s


def launch(spec: Mapping[str, Any], status_fd: int | None) -> tuple[int, Stdio, socket.socket]:
    """Prepare the stdio and fork the start child; returns (child pid, the monitor's stdio, the
    report socket). The container's ends of the stdio are closed here once the child has them."""
    stdio = make_stdio(spec)
    report, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        report.close()
        _child_main(spec, stdio.child_fds, status_fd, child_end)
    child_end.close()
    for fd in stdio.child_fds.values():
        os.close(fd)
    return pid, stdio, report


def read_report(report: socket.socket) -> tuple[dict[str, Any], int]:
    """The start child's message and the pty master it may carry (-1 if none)."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(report, 65536, 1)
    except OSError as e:
        return {"error": f"reading the start report: {e}"}, -1
    if not data:
        return {"error": "the container's start process died"}, -1
    try:
        msg: dict[str, Any] = json.loads(data)
    except ValueError:
        msg = {"error": data.decode(errors="replace")}
    return msg, (fds[0] if fds else -1)


# --- in the start child ------------------------------------------------------------------------------


def _child_main(
    spec: Mapping[str, Any], fds: dict[str, int], status_fd: int | None, report: socket.socket
) -> NoReturn:
    code = 1
    try:
        # The monitor's handlers and wakeup fd are not ours; ignored signals must not reach the
        # runtime or the container.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        msg, master, warnings = _start(spec, fds)
        if status_fd is not None:
            status = {"pid": msg["pid"], "warnings": warnings} if "pid" in msg else msg
            try:
                os.write(status_fd, json.dumps(status).encode())
            except OSError:
                pass  # the CLI is gone (interrupted): the container runs on all the same
        socket.send_fds(report, [json.dumps(msg).encode()], [master] if master >= 0 else [])
        code = 0
    except BaseException as e:  # noqa: BLE001 - every failure becomes a report
        error = {"error": str(e) or type(e).__name__}
        import traceback

        traceback.print_exc()
        for send in (
            lambda: status_fd is not None and os.write(status_fd, json.dumps(error).encode()),
            lambda: report.send(json.dumps(error).encode()),
        ):
            try:
                send()
            except OSError:
                pass
    finally:
        os._exit(code)


def _start(spec: Mapping[str, Any], fds: dict[str, int]) -> tuple[dict[str, Any], int, list[str]]:
    runtime = _runtime(spec)
    master = -1
    record = _Record(spec)
    if spec["runtime"] == "builtin":
        created = _create_builtin(runtime, spec, fds, record.prepare)
        pid, warnings, master = created.pid, list(created.warnings), created.master
    else:
        _clear_stale_oci_state(runtime, spec)
        created, master = _create_oci(runtime, spec, fds)
        pid, warnings = created.pid, []
    size = spec.get("console_size")
    if master >= 0 and size:
        from pallet.runtime import console

        console.set_size(master, int(size[0]), int(size[1]))
    for fd in fds.values():
        os.close(fd)
    try:
        if not record.set_running(pid):
            _abandon(runtime, spec, pid)
            return {"cancelled": True}, -1, warnings
        runtime.start(created)
    except BaseException:
        _abandon(runtime, spec, pid)
        raise
    return {"pid": pid}, master, warnings


class _Record:
    """The run's "running" record. Everything but the write itself (imports, the connection, a first
    read, which also loads the schema) happens in `prepare`, while the built-in runtime sets the
    container up: only the write lies between the container being ready and its start."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.conn: Any = None
        self.health: Any = None
        self.stamp: Any = None  # jsonlog.rfc3339_nano
        self.start_time: Any = None  # monitor.process_start_time
        self.set_running_unless_cancelled: Any = None

    def prepare(self) -> None:
        from pallet.runtime import jsonlog, monitor
        from pallet.state import containers, db

        self.stamp, self.start_time = jsonlog.rfc3339_nano, monitor.process_start_time
        self.set_running_unless_cancelled = containers.set_running_unless_cancelled
        self.conn = db.connect(self.spec["db_path"], migrate=False)  # the engine opened it before us
        rec = containers.get(self.conn, self.spec["container_id"])
        if self.spec.get("healthcheck"):
            from pallet.runtime.health import starting

            self.health = starting(rec.state.get("Health") if rec else None)

    def set_running(self, pid: int) -> bool:
        """Record the container as running with `pid`; False if a user stop cancelled the start."""
        if self.conn is None:
            self.prepare()
        fields: dict[str, Any] = {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": pid,
            "PidStart": self.start_time(pid),
            "ExitCode": 0,
            "Error": "",
            "StartedAt": self.stamp(time.time_ns()),
        }
        if self.health is not None:
            fields["Health"] = self.health
        return bool(self.set_running_unless_cancelled(self.conn, self.spec["container_id"], **fields))


def _runtime(spec: Mapping[str, Any]) -> Any:
    if spec["runtime"] == "builtin":
        from pallet.runtime import builtin

        return builtin
    from pallet.runtime import oci_cli

    return oci_cli.OciRuntime(spec["runtime"], spec["runtime_root"])


def _create_builtin(
    runtime: Any, spec: Mapping[str, Any], fds: dict[str, int], meanwhile: Callable[[], object]
) -> Any:
    # This child is single-threaded and exits soon: the runtime's namespace stage runs right here.
    kw: dict[str, Any] = {"in_caller": True, "meanwhile": meanwhile}
    if spec["tty"]:
        return runtime.create(spec["bundle"], spec["container_id"], terminal=True, **kw)
    return runtime.create(
        spec["bundle"],
        spec["container_id"],
        stdin=fds.get("stdin"),
        stdout=fds["stdout"],
        stderr=fds["stderr"],
        **kw,
    )


def _create_oci(runtime: Any, spec: Mapping[str, Any], fds: dict[str, int]) -> tuple[Any, int]:
    if not spec["tty"]:
        created = runtime.create(
            spec["bundle"],
            spec["container_id"],
            stdin=fds.get("stdin"),
            stdout=fds["stdout"],
            stderr=fds["stderr"],
        )
        return created, -1
    from pallet.runtime import console, unixsock

    listener = unixsock.listen(spec["run_dir"], "console.sock", backlog=1)
    path, dir_fd = unixsock.path_for_others(spec["run_dir"], "console.sock")
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        created = runtime.create(
            spec["bundle"], spec["container_id"], stdin=None, stdout=null, stderr=null, console_socket=path
        )
        try:
            master = console.receive_master(listener)
        except BaseException:
            _abandon(runtime, spec, created.pid)
            raise
    finally:
        os.close(null)
        os.close(dir_fd)
        listener.close()
        try:
            os.unlink(os.path.join(spec["run_dir"], "console.sock"))
        except OSError:
            pass
    return created, master


def _clear_stale_oci_state(runtime: Any, spec: Mapping[str, Any]) -> None:
    """A host reboot or a killed monitor can leave runc/crun's state of an earlier run behind;
    `create` would refuse the id."""
    if os.path.exists(os.path.join(spec["runtime_root"], spec["container_id"])):
        try:
            runtime.delete(spec["bundle"], spec["container_id"])
        except (OSError, RuntimeError) as e:
            print(f"clearing stale runtime state: {e}", file=sys.stderr)


def _abandon(runtime: Any, spec: Mapping[str, Any], pid: int) -> None:
    """Take down a container that was created but must not run."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        runtime.delete(spec["bundle"], spec["container_id"])
    except (OSError, RuntimeError) as e:
        print(f"cleanup after a failed start: {e}", file=sys.stderr)
