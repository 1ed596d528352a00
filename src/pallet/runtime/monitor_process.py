"""The container monitor's own process: exec'd by monitor.spawn as a lean interpreter
(`python -I -S`), it lives as long as the container does, restarts included.

One loop (selectors) serves everything: the container's output (pipes, or the pty master of a
TTY container) into the json-file log and to attached clients, clients' input to the container,
the start child's report, signals (SIGCHLD: reap; SIGUSR2: a user stop wants the restart
back-off re-examined), healthcheck probes, and the timers of the back-off and of the probes.

The monitor never opens the database itself: what must be recorded (an exit, a restart, a health
result) is written by a short-lived child (runtime/monitor_records.py), which also cleans up after
an exit, so that sqlite3 and ctypes never load into this long-lived process. Order at the end
matters to the CLI: cleanup (runtime state, cgroups, rootfs mount), then the record, then the
EXIT frame to attached clients.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time

from pallet.runtime import monitor_records as records
from pallet.runtime import stream
from pallet.runtime.attach_clients import BACKLOG_MAX, Clients
from pallet.runtime.container_start import Stdio, launch, read_report
from pallet.runtime.jsonlog import JsonLogWriter, LogOptions, rfc3339_nano
from pallet.runtime.restart import Backoff

TYPE_CHECKING = False  # typing costs ~2 ms at import; the names are for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


DRAIN_AFTER_EXIT = 2.0  # output still buffered is read; escaped writers don't hold us forever
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


def main(payload_fd: int) -> None:
    code = 1
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("pallet-monitor")
        with open(payload_fd, "rb") as f:
            msg = json.loads(f.read())
        for entry in msg["spec"].get("sys_path") or []:
            if entry not in sys.path:
                sys.path.append(entry)
        Monitor(msg["spec"], msg["fds"], int(msg["start_child"]), msg.get("helper")).run()
        code = 0
    except BaseException:  # noqa: BLE001 - the reason goes to monitor.log
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


class Run:
    """One run of the container: from the start child's fork to the container's exit."""

    def __init__(self, start_child: int, report: socket.socket, stdio: Stdio) -> None:
        self.start_child = start_child
        self.report: socket.socket | None = report
        self.stdio = stdio
        self.pid = 0
        self.failed: str | None = None  # why the start failed ("" when a user stop cancelled it)
        self.status: int | None = None  # wait status, once reaped
        self.started = 0.0  # monotonic
        self.drain_deadline: float | None = None
        self.outputs: dict[int, str] = {}  # open output fds -> "stdout" / "stderr" / "tty"
        self.outputs_paused = False
        self.stdin_buf = bytearray()
        self.stdin_closing = False
        self.size: tuple[int, int] | None = None  # a TTY's size asked for before its pty master came

    @property
    def stdin_fd(self) -> int:
        return self.stdio.master if self.stdio.master >= 0 else self.stdio.stdin_w

    def done(self) -> bool:
        if self.status is None:
            return False
        return not self.outputs or (
            self.drain_deadline is not None and time.monotonic() >= self.drain_deadline
        )


class Monitor:
    def __init__(
        self,
        spec: dict[str, Any],
        fds: dict[str, int],
        start_child: int,
        helper: dict[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.cid: str = spec["container_id"]
        self.sel = selectors.DefaultSelector()
        self.reaped: dict[int, int] = {}  # children reaped before we learnt who they were
        self.first_run = True
        self.log = JsonLogWriter(spec["log_path"], LogOptions.from_json(spec["log"])) if spec["log"] else None
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGUSR2):
            signal.signal(sig, lambda *_: None)  # the wakeup fd carries them to the loop
        self.sel.register(self.wake_r, _READ, ("wake", None))
        self.reconsider = False  # a SIGUSR2 came: re-read whether the restart is cancelled
        listener = socket.socket(fileno=fds["listener"]) if fds["listener"] >= 0 else None
        self.clients = Clients(self.sel, listener, self._stdin, self._stdin_end, self._resize)
        if fds["attach"] >= 0:
            self.clients.add(socket.socket(fileno=fds["attach"]))
        stdio = Stdio()
        stdio.out_r, stdio.err_r, stdio.stdin_w, stdio.master = (
            fds["out_r"],
            fds["err_r"],
            fds["stdin_w"],
            fds["master"],
        )
        for fd in stdio.monitor_fds().values():
            if fd >= 0:
                os.set_inheritable(fd, False)
        self.cur = Run(start_child, socket.socket(fileno=fds["report"]), stdio)
        self._watch(self.cur)
        self.backoff = Backoff()
        self.exit_info: dict[str, Any] = {"ExitCode": 0, "OOMKilled": False}
        self.recorded = False  # the end is in the database already
        self.health: Any = None
        if spec.get("healthcheck"):
            from pallet.runtime.health import Schedule

            self.health = Schedule(spec)
        # What start-up made lives as long as we do: out of the collector's sight, a collection is
        # cheaper here, and never walks (and so copies) the pages our forked children share.
        gc.freeze()
        if not records.adopt_helper(helper):  # forked before the exec (runtime/monitor.py), or now
            records.start_helper(spec)
        # Children that ended while this interpreter was starting sent SIGCHLD to no handler.
        self._on_signals()

    # ---- the life of the container ----------------------------------------------------------

    def run(self) -> None:
        while True:
            self._serve(lambda: bool(self.cur.pid) or self.cur.failed is not None)
            if not self.cur.pid:
                if self.first_run:
                    return self._give_up()  # the CLI reports the error and undoes the start
                return self._finish(error=self.cur.failed or "")
            self._serve(self.cur.done)
            delay = self._on_exit()
            if delay is None or not self._back_off(delay):
                return self._finish()
            self.first_run = False
            self.cur = Run(*_swap(launch(self.spec, None)))
            self._watch(self.cur)

    def _serve(self, until: Callable[[], bool], deadline: float | None = None) -> None:
        while not until():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            wake_at = [t for t in (deadline, self.cur.drain_deadline) if t is not None]
            if self.health:
                wake_at += [t for t in [self.health.next_wake()] if t is not None]
            timeout = max(0.0, min(wake_at) - now) if wake_at else None
            for key, mask in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "wake":
                    self._on_signals()
                elif kind == "output":
                    self._on_output(key.fd)
                elif kind == "stdin":
                    self._flush_stdin()
                elif kind == "tty":
                    if mask & _WRITE:
                        self._flush_stdin()
                    if mask & _READ:
                        self._on_output(key.fd)
                elif kind == "listener":
                    self.clients.accept()
                elif kind == "client":
                    self.clients.on_event(obj, mask)
                elif kind == "report":
                    self._on_report()
                elif kind == "probe":
                    self.health.on_readable(self.sel)
            self._apply_backpressure()
            if self.health and self.cur.pid and self.cur.status is None:
                self.health.tick(self.sel, self.cur.pid)

    # ---- one run ----------------------------------------------------------------------------

    def _watch(self, run: Run) -> None:
        assert run.report is not None
        self.sel.register(run.report, _READ, ("report", None))
        s = run.stdio
        if s.master >= 0:
            self._watch_tty(run, s.master)
        for fd, name in ((s.out_r, "stdout"), (s.err_r, "stderr")):
            if fd >= 0:
                run.outputs[fd] = name
                self.sel.register(fd, _READ, ("output", None))

    def _watch_tty(self, run: Run, master: int) -> None:
        run.stdio.master = master
        os.set_blocking(master, False)
        run.outputs[master] = "tty"
        self.sel.register(master, _READ, ("tty", None))
        # The runtime hands the master over with its report: what clients sent before it is applied now.
        if run.size is not None:
            self._resize(*run.size)
        self._flush_stdin()

    def _on_report(self) -> None:
        run = self.cur
        assert run.report is not None
        msg, master = read_report(run.report)
        self.sel.unregister(run.report)
        run.report.close()
        run.report = None
        if master >= 0:
            self._watch_tty(run, master)
        if "pid" in msg:
            run.pid = int(msg["pid"])
            run.started = time.monotonic()
            if run.pid in self.reaped:
                self._container_exited(self.reaped.pop(run.pid))
            if self.health:
                self.health.started()
        else:
            run.failed = "" if msg.get("cancelled") else str(msg.get("error") or "start failed")
            self._close_stdio(run)

    def _on_signals(self) -> None:
        try:
            got = os.read(self.wake_r, 4096)
        except BlockingIOError:
            got = b""
        if signal.SIGUSR2 in got:
            self.reconsider = True
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.cur.pid:
                self._container_exited(status)
            elif pid == self.cur.start_child:
                self.cur.start_child = 0
            elif self.health and self.health.owns(pid):
                self.health.reaped(pid)
            elif records.owns(pid):
                pass  # a record child (see monitor_records._reap)
            elif not self.cur.pid:
                self.reaped[pid] = status  # maybe the container's init, before its report came

    def _container_exited(self, status: int) -> None:
        self.cur.status = status
        self.cur.drain_deadline = time.monotonic() + DRAIN_AFTER_EXIT
        if self.health:
            self.health.stop(self.sel)

    def _on_output(self, fd: int) -> None:
        name = self.cur.outputs.get(fd)
        if name is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            # EIO on a pty master: every holder of the slave is gone.
            if e.errno not in (errno.EIO, errno.EBADF):
                print(f"reading the container's {name}: {e}", file=sys.stderr)
            data = b""
        if not data:
            self.cur.outputs.pop(fd)
            self.sel.unregister(fd)
            if name != "tty":  # the master stays open until the run ends (stdin, resize)
                os.close(fd)
            return
        log_stream = "stderr" if name == "stderr" else "stdout"
        if self.log is not None:
            self.log.write(log_stream, data)
        self.clients.broadcast(stream.STDERR if name == "stderr" else stream.STDOUT, data)

    def _apply_backpressure(self) -> None:
        """Stop reading the container's output while a client can't keep up, and clients' input
        while the container doesn't read its stdin."""
        run = self.cur
        self.clients.set_reading(len(run.stdin_buf) <= BACKLOG_MAX)
        slow = self.clients.backlog() > BACKLOG_MAX
        if slow == run.outputs_paused:
            return
        run.outputs_paused = slow
        for fd, name in run.outputs.items():
            want = 0 if slow else _READ
            if name == "tty":
                self._set_events(fd, want | (_WRITE if run.stdin_buf else 0), ("tty", None))
            else:
                self._set_events(fd, want, ("output", None))

    # ---- input from clients -------------------------------------------------------------------

    def _stdin(self, data: bytes) -> None:
        run = self.cur
        # A TTY's input is queued until its runtime hands the pty master over (with the start report).
        pending_tty = self.spec["tty"] and run.report is not None
        if (run.stdin_fd < 0 and not pending_tty) or run.stdin_closing or run.status is not None:
            return
        run.stdin_buf += data
        self._flush_stdin()

    def _stdin_end(self) -> None:
        """A client with stdin detached or sent EOF: with StdinOnce (docker run -i) the
        container's stdin closes once what is queued is written (never a TTY's)."""
        run = self.cur
        if self.spec["stdin_once"] and not self.spec["tty"] and run.stdio.stdin_w >= 0:
            run.stdin_closing = True
            self._flush_stdin()

    def _flush_stdin(self) -> None:
        run = self.cur
        fd = run.stdin_fd
        if fd < 0:
            return
        if run.stdin_buf:
            try:
                n = os.write(fd, run.stdin_buf)
                del run.stdin_buf[:n]
            except BlockingIOError:
                pass
            except OSError:
                run.stdin_buf.clear()  # the reader is gone
        tty = fd == run.stdio.master
        if tty:
            want = (_READ if fd in run.outputs and not run.outputs_paused else 0) | (
                _WRITE if run.stdin_buf else 0
            )
            self._set_events(fd, want, ("tty", None))
            return
        self._set_events(fd, _WRITE if run.stdin_buf else 0, ("stdin", None))
        if run.stdin_closing and not run.stdin_buf:
            os.close(fd)
            run.stdio.stdin_w = -1

    def _set_events(self, fd: int, events: int, data: tuple[str, Any]) -> None:
        try:
            current = self.sel.get_key(fd).events
        except KeyError:
            current = 0
        if events == current:
            return
        if not events:
            self.sel.unregister(fd)
        elif not current:
            self.sel.register(fd, events, data)
        else:
            self.sel.modify(fd, events, data)

    def _resize(self, height: int, width: int) -> None:
        if self.cur.stdio.master < 0 and self.spec["tty"]:
            self.cur.size = (height, width)  # applied once the runtime hands the master over
        if self.cur.stdio.master >= 0:
            from pallet.runtime import console

            try:
                console.set_size(self.cur.stdio.master, height, width)
            except OSError as e:
                print(f"resize: {e}", file=sys.stderr)

    # ---- exit, restart, end -------------------------------------------------------------------

    def _on_exit(self) -> float | None:
        """Record one exit; returns the back-off delay if the policy restarts the container, None
        when it has ended for good (recorded, unmounted, and removed with --rm)."""
        run = self.cur
        run.drain_deadline = None
        if self.log is not None:
            self.log.flush()
        code = os.waitstatus_to_exitcode(run.status or 0)
        self._close_stdio(run)
        self.exit_info = {
            "ExitCode": 128 - code if code < 0 else code,
            "OOMKilled": False,
            "FinishedAt": rfc3339_nano(time.time_ns()),
        }
        health = self.health.health if self.health else None
        try:
            # The child also removes the runtime's state (cgroups), and reads the OOM verdict first.
            result = records.in_child(records.record_exit, self.spec, self.exit_info, health)
            self.exit_info["OOMKilled"] = bool(result["OOMKilled"])
            outcome = result["outcome"]
        except records.RecordError as e:
            print(f"recording the exit: {e}", file=sys.stderr)
            try:
                records.in_child(records.drop_runtime_state, self.spec)  # the cgroups must go all the same
            except records.RecordError as e2:
                print(f"deleting the container's runtime state: {e2}", file=sys.stderr)
            outcome = "stop"
        if outcome != "restart":
            self.recorded = True
            return None
        delay = self.backoff.next(time.monotonic() - run.started)
        self.clients.finish(self.exit_info)  # docker ends attach streams at every exit
        return delay

    def _back_off(self, delay: float) -> bool:
        """Wait out the delay (serving clients); False if a user stop cancelled the restart."""
        deadline = time.monotonic() + delay
        while True:
            if records.in_child(records.restart_cancelled, self.spec):
                return False
            self.reconsider = False
            self._serve(lambda: self.reconsider, deadline)
            if not self.reconsider:
                return not records.in_child(records.restart_cancelled, self.spec)

    def _give_up(self) -> None:
        """The first start failed: the engine (our caller's) records it and unmounts."""
        self.clients.close_listener()
        _unlink(os.path.join(self.spec["run_dir"], "attach.sock"))

    def _finish(self, error: str = "") -> None:
        """Down for good: recorded (see monitor_records.record_end), then the clients are told."""
        if self.health:
            self.health.stop(self.sel)
        if not self.recorded:
            try:
                records.in_child(records.record_end, self.spec, self.exit_info, error)
            except records.RecordError as e:
                print(f"recording the end: {e}", file=sys.stderr)
        self.clients.close_listener()
        self.clients.finish(self.exit_info)
        if self.log is not None:
            self.log.close()

    def _close_stdio(self, run: Run) -> None:
        for fd in list(run.outputs):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        for fd in {*run.outputs, run.stdio.stdin_w, run.stdio.master} - {-1}:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        run.outputs.clear()
        run.stdio.stdin_w = run.stdio.master = -1


def _swap(launched: tuple[int, Stdio, socket.socket]) -> tuple[int, socket.socket, Stdio]:
    pid, stdio, report = launched
    return pid, report, stdio


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
